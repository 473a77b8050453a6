// The web app's pages: login, devices, one device, audit log. Hash routes (#/devices,
// #/device/ID, #/audit); every string from the server or a device is set as textContent.
import {
  ApiError, api, el, formatTime, forgetSession, isDeviceId, login, logout, session, sessionName,
} from './api.js';

const views = ['login-view', 'devices-view', 'device-view', 'audit-view'];

function $(id) {
  return document.getElementById(id);
}

function show(view) {
  for (const v of views) $(v).hidden = v !== view;
  const loggedIn = Boolean(session());
  $('nav').hidden = !loggedIn;
  $('whoami').textContent = loggedIn ? 'Logged in as ' + sessionName() : '';
}

function showMessage(text) {
  const m = $('message');
  m.textContent = text || '';
  m.hidden = !text;
}

function describe(error) {
  if (error instanceof ApiError) return error.message + ' (' + error.code + ')';
  return String(error);
}

async function guarded(work) {
  try {
    await work();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      forgetSession();
      show('login-view');
      showMessage('Please log in again: ' + e.message);
      return;
    }
    showMessage(describe(e));
  }
}

function osText(os) {
  // hello's os is free text from the device (or an object from newer agents).
  if (!os) return '';
  if (typeof os === 'string') return os;
  return [os.name, os.version].filter(Boolean).join(' ');
}

async function renderDevices() {
  show('devices-view');
  const data = await api('GET', '/api/v1/devices');
  const body = $('devices').querySelector('tbody');
  body.replaceChildren();
  const devices = Array.isArray(data.devices) ? data.devices : [];
  $('devices-empty').hidden = devices.length > 0;
  for (const d of devices) {
    const row = document.createElement('tr');
    row.dataset.deviceId = isDeviceId(d.id) ? d.id : '';
    const nameCell = el('td');
    const link = el('a', d.hostname || d.name || '(no hostname)');
    if (isDeviceId(d.id)) link.href = '#/device/' + d.id;
    nameCell.append(link);
    const idCell = el('td', String(d.id || '').slice(0, 12), 'id');
    idCell.title = String(d.id || '');
    row.append(nameCell, idCell,
      el('td', d.revoked ? 'revoked' : (d.online ? 'online' : 'offline'),
        d.online ? 'online' : 'offline'),
      el('td', d.online ? 'now' : formatTime(d.last_seen)),
      el('td', osText(d.os)));
    body.append(row);
  }
}

function displaysOf(device) {
  const inv = device.inventory;
  if (!inv || !Array.isArray(inv.displays)) return [];
  return inv.displays
    .filter((d) => d && typeof d.connector === 'string' && d.connected !== false)
    .map((d) => d.connector);
}

async function renderDevice(id) {
  show('device-view');
  if (!isDeviceId(id)) throw new Error('not a device id');
  const d = await api('GET', '/api/v1/devices/' + id);
  $('device-title').textContent = d.name || d.hostname || id;
  const facts = $('device-facts');
  facts.replaceChildren();
  const rows = [
    ['Hostname', d.hostname], ['Id', d.id], ['Online', d.online ? 'yes' : 'no'],
    ['Address', d.address], ['Last seen', d.online ? 'now' : formatTime(d.last_seen)],
    ['OS', osText(d.os)], ['Agent', d.agent_version],
  ];
  for (const [k, v] of rows) facts.append(el('dt', k), el('dd', v));
  const select = $('monitor');
  select.replaceChildren(el('option', 'Whole desktop'));
  select.firstChild.value = '';
  const displays = displaysOf(d);
  for (const name of displays) {
    const option = el('option', name);
    option.value = name;
    select.append(option);
  }
  $('monitor-choice').hidden = displays.length === 0;
  const open = (viewOnly) => {
    const params = new URLSearchParams({ device: id, view_only: viewOnly ? '1' : '0' });
    if (select.value) params.set('monitor', select.value);
    window.location.href = 'viewer.html?' + params.toString();
  };
  $('shadow').onclick = () => open(false);
  $('shadow-view-only').onclick = () => open(true);
}

function durationText(row) {
  if (!row.started_at) return '';
  const end = row.ended_at || Math.floor(Date.now() / 1000);
  return Math.max(0, end - row.started_at) + ' s';
}

async function renderAudit() {
  show('audit-view');
  const data = await api('GET', '/api/v1/audit?limit=200');
  const body = $('audit').querySelector('tbody');
  body.replaceChildren();
  for (const r of Array.isArray(data.sessions) ? data.sessions : []) {
    const row = document.createElement('tr');
    const ended = r.ended_at ? [r.end_reason, r.end_message].filter(Boolean).join(': ')
      : 'running';
    row.append(
      el('td', formatTime(r.requested_at)),
      el('td', r.hostname || String(r.device || '').slice(0, 12)),
      el('td', r.admin),
      el('td', r.viewer),
      el('td', r.view_only ? 'yes' : 'no'),
      el('td', durationText(r)),
      el('td', (r.bytes_to_viewer || 0) + ' / ' + (r.bytes_to_device || 0)),
      el('td', ended));
    body.append(row);
  }
}

async function route() {
  showMessage('');
  if (!session()) {
    show('login-view');
    return;
  }
  const hash = window.location.hash || '#/devices';
  await guarded(async () => {
    if (hash.startsWith('#/device/')) {
      await renderDevice(hash.slice('#/device/'.length));
    } else if (hash === '#/audit') {
      await renderAudit();
    } else {
      await renderDevices();
    }
  });
}

async function submitLogin(event, credentials) {
  event.preventDefault();
  showMessage('');
  try {
    await login(credentials);
    event.target.reset();
    if (!window.location.hash || window.location.hash === '#/login') {
      window.location.hash = '#/devices';
    }
    await route();
  } catch (e) {
    showMessage(describe(e));
  }
}

$('login-user').addEventListener('submit', (event) => submitLogin(event, {
  name: $('login-name').value, password: $('login-password').value,
}));
$('login-token').addEventListener('submit', (event) => submitLogin(event, {
  token: $('login-admin-token').value.trim(),
}));
$('logout').addEventListener('click', async () => {
  await logout();
  show('login-view');
});
window.addEventListener('hashchange', route);
route();
