// The REST API from the browser: the login session lives in sessionStorage (this tab only,
// gone when it closes) and goes out as a bearer token. Nothing here touches the DOM.

const SESSION_KEY = 'tether.session';
const NAME_KEY = 'tether.name';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function session() {
  return sessionStorage.getItem(SESSION_KEY);
}

export function sessionName() {
  return sessionStorage.getItem(NAME_KEY) || '';
}

export function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(NAME_KEY);
}

export async function api(method, path, body) {
  const headers = {};
  const token = session();
  if (token) headers.Authorization = 'Bearer ' + token;
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'unavailable', 'the server cannot be reached');
  }
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    if (response.status === 401 && path !== '/api/v1/login') forgetSession();
    throw new ApiError(response.status, String(error.code || 'error'),
      String(error.message || ('HTTP ' + response.status)));
  }
  return data;
}

export async function login(credentials) {
  const data = await api('POST', '/api/v1/login', credentials);
  sessionStorage.setItem(SESSION_KEY, String(data.session));
  sessionStorage.setItem(NAME_KEY, String(data.name));
  return data;
}

export async function logout() {
  try {
    if (session()) await api('POST', '/api/v1/logout');
  } finally {
    forgetSession();
  }
}

export function isDeviceId(text) {
  return typeof text === 'string' && /^[0-9a-f]{64}$/.test(text);
}

export function formatTime(unixSeconds) {
  if (!unixSeconds) return 'never';
  return new Date(unixSeconds * 1000).toLocaleString();
}

// Makes an element with text content only: strings from devices never become markup.
export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}
