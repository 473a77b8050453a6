// The shadowing viewer: asks the server for a session on the device, then opens noVNC
// (Debian's novnc, served under /novnc/) on the viewer end of the tunnel. Device-supplied
// text (hostname, desktop name, refusal reasons) is set as textContent only.
import RFB from '/novnc/core/rfb.js';
import { ApiError, api, isDeviceId, session } from './api.js';

const params = new URLSearchParams(window.location.search);
const deviceId = params.get('device') || '';
const wantViewOnly = params.get('view_only') === '1';
const monitor = params.get('monitor') || '';

const statusText = document.getElementById('status');
const message = document.getElementById('message');
const disconnectButton = document.getElementById('disconnect');
let rfb = null;
let sessionId = null;

// For tests and the curious: the viewer's state, readable from the console.
window.tetherViewer = { state: 'starting', rfb: null, viewOnly: wantViewOnly };

function setStatus(state, detail) {
  window.tetherViewer.state = state;
  statusText.textContent = detail ? state + ': ' + detail : state;
  statusText.dataset.state = state;
}

function showMessage(text) {
  message.textContent = text || '';
  message.hidden = !text;
}

const REFUSALS = {
  user_denied: 'the device\'s user refused',
  prompt_timeout: 'the device\'s user did not answer',
  policy: 'the device\'s policy forbids it',
  no_session: 'nobody is logged in on the device',
  busy: 'the device is being shadowed already',
  offline: 'the device is offline',
  vnc_failed: 'the device could not start its VNC server',
};

async function endReason() {
  // What the server recorded about how the session ended (it may take a moment to learn).
  if (!sessionId) return null;
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      const data = await api('GET', '/api/v1/audit?device=' + deviceId + '&limit=20');
      const row = (data.sessions || []).find((r) => r.session === sessionId);
      if (row && row.ended_at && row.end_reason) return String(row.end_reason);
    } catch (e) {
      return null;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  return null;
}

async function start() {
  if (!session()) {
    window.location.href = 'index.html';
    return;
  }
  if (!isDeviceId(deviceId)) {
    setStatus('failed', 'no device given');
    return;
  }
  document.getElementById('back').href = 'index.html#/device/' + deviceId;
  try {
    const device = await api('GET', '/api/v1/devices/' + deviceId);
    document.getElementById('device-name').textContent = device.hostname || device.name || '';
  } catch (e) {
    // The shadow request below says what is wrong.
  }
  setStatus('requesting', wantViewOnly ? 'view only' : '');
  let answer;
  try {
    const body = { view_only: wantViewOnly, viewer: 'browser' };
    if (monitor) body.monitor = monitor;
    answer = await api('POST', '/api/v1/devices/' + deviceId + '/shadow', body);
  } catch (e) {
    const code = e instanceof ApiError ? e.code : 'error';
    setStatus('refused', code);
    showMessage((REFUSALS[code] ? REFUSALS[code] + ': ' : '') + (e.message || String(e)));
    return;
  }
  sessionId = answer.session;
  const viewOnly = Boolean(answer.view_only) || wantViewOnly;
  window.tetherViewer.viewOnly = viewOnly;
  setStatus('connecting', viewOnly ? 'view only' : '');
  rfb = new RFB(document.getElementById('screen'), answer.viewer_url,
    { wsProtocols: ['binary'], shared: true });
  window.tetherViewer.rfb = rfb;
  rfb.viewOnly = viewOnly;
  rfb.scaleViewport = true;
  rfb.focusOnClick = true;
  rfb.addEventListener('connect', () => {
    setStatus('connected', viewOnly ? 'view only' : '');
    disconnectButton.disabled = false;
    rfb.focus();
  });
  rfb.addEventListener('desktopname', (e) => {
    document.getElementById('desktop-name').textContent = String(e.detail.name);
  });
  rfb.addEventListener('securityfailure', (e) => {
    showMessage('The VNC server refused: ' + String(e.detail.reason || e.detail.status));
  });
  rfb.addEventListener('credentialsrequired', () => {
    showMessage('The VNC server asked for credentials; Tether sessions need none.');
    rfb.disconnect();
  });
  rfb.addEventListener('disconnect', async (e) => {
    disconnectButton.disabled = true;
    setStatus('disconnected', e.detail.clean ? '' : 'the connection was lost');
    window.tetherViewer.rfb = null;
    const reason = await endReason();
    if (reason) setStatus('disconnected', reason);
  });
}

disconnectButton.addEventListener('click', () => {
  if (rfb) rfb.disconnect();
});

start();
