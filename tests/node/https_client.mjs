// POSTs standard input to the HTTPS URL in argv[2], configured only by the
// environment a container wired by `traffic-guardian setup` has
// (HTTPS_PROXY/https_proxy, NO_PROXY/no_proxy, NODE_USE_ENV_PROXY,
// NODE_EXTRA_CA_CERTS), and writes the response body to standard output,
// byte for byte. Uses Node's built-ins only: nothing to install.
//
// Node's fetch honours the proxy variables only from Node 22.21 and 24.5
// on, and only with NODE_USE_ENV_PROXY=1. On those versions this client
// uses fetch. On older ones (Node 20 ignores the variables: fetch would go
// straight to the server and bypass the guardian) it does what a proxy
// aware client does: `CONNECT host:port` to the proxy with `http.request`,
// then TLS over that tunnel with `https.request`, whose certificate check
// uses Node's default roots plus NODE_EXTRA_CA_CERTS.
//
// Prints `client: fetch` or `client: connect` on stderr, saying which.
// Exit status: 0 on a 2xx answer, 1 on any other answer, 2 when the
// request failed (proxy, TLS or connection error), with the reason.

import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

const target = new URL(process.argv[2]);
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const body = Buffer.concat(chunks);

function envProxyFetch() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  const supported = major >= 25 || (major === 24 && minor >= 5) || (major === 22 && minor >= 21);
  return supported && process.env.NODE_USE_ENV_PROXY === '1';
}

/** The proxy for `url` from the environment, or null (unset, or NO_PROXY). */
function proxyFor(url) {
  const noProxy = (process.env.NO_PROXY ?? process.env.no_proxy ?? '')
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean);
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const bypass = noProxy.some(
    (entry) => entry === '*' || host === entry || host.endsWith(`.${entry.replace(/^\./, '')}`),
  );
  const proxy = process.env.HTTPS_PROXY ?? process.env.https_proxy;
  return bypass || !proxy ? null : new URL(proxy);
}

function fail(code, why) {
  process.stderr.write(`request failed: ${why}\n`);
  process.exit(code);
}

function finish(status, bytes) {
  process.stdout.write(bytes, () => process.exit(status >= 200 && status < 300 ? 0 : 1));
}

async function viaFetch() {
  process.stderr.write('client: fetch\n');
  let response;
  try {
    response = await fetch(target, {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/plain' },
    });
  } catch (err) {
    fail(2, `${err} ${err.cause ?? ''}`);
  }
  finish(response.status, Buffer.from(await response.arrayBuffer()));
}

/** Opens a TCP tunnel to the target through `proxy` with CONNECT. */
function tunnel(proxy) {
  const authority = `${target.hostname}:${target.port || 443}`;
  const headers = { host: authority };
  if (proxy.username) {
    const user = decodeURIComponent(proxy.username);
    const password = decodeURIComponent(proxy.password);
    headers['proxy-authorization'] = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  }
  return new Promise((resolve, reject) => {
    const connect = http.request({
      host: proxy.hostname,
      port: proxy.port || 80,
      method: 'CONNECT',
      path: authority,
      headers,
    });
    connect.on('connect', (response, socket) => {
      if (response.statusCode === 200) {
        resolve(socket);
      } else {
        socket.destroy();
        reject(new Error(`proxy answered CONNECT with ${response.statusCode}`));
      }
    });
    connect.on('error', reject);
    connect.end();
  });
}

async function viaConnect() {
  process.stderr.write('client: connect\n');
  const proxy = proxyFor(target);
  let socket = null;
  if (proxy) {
    try {
      socket = await tunnel(proxy);
    } catch (err) {
      fail(2, err.message);
    }
  }
  const host = target.hostname.replace(/^\[|\]$/g, '');
  const request = https.request(target, {
    method: 'POST',
    headers: { 'content-type': 'text/plain', 'content-length': body.length },
    // Through the tunnel when there is a proxy; the certificate is checked
    // against `host` either way (SNI only for names, never for addresses).
    ...(socket && {
      createConnection: () =>
        tls.connect({ socket, host, servername: net.isIP(host) ? undefined : host }),
    }),
  });
  request.setTimeout(30_000, () => request.destroy(new Error('timed out')));
  request.on('error', (err) => fail(2, err.message));
  request.on('response', (response) => {
    const parts = [];
    response.on('data', (part) => parts.push(part));
    response.on('end', () => finish(response.statusCode, Buffer.concat(parts)));
    response.on('error', (err) => fail(2, err.message));
  });
  request.end(body);
}

if (envProxyFetch()) {
  await viaFetch();
} else {
  await viaConnect();
}
