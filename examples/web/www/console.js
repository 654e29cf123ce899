// The circles browser console: a thin page around the WASM client
// (circle_client_ws's `js` bindings, built into ./pkg by ../build.sh).
//
// The page keeps one CircleClient and reuses its connection while the URL
// and the key stay the same; changing either opens a fresh connection (a
// sign-in belongs to one connection). Output and errors go to #output, whose
// data-state ("running", "done", "error") lets tests wait for the result.

import init, { CircleClient } from "./pkg/circle_console.js";

const $ = (id) => document.getElementById(id);

/** The live client: { url, key, instance }, or null. */
let current = null;
let running = false;

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

function showOutput(text, state) {
  $("output").textContent = text;
  $("output").dataset.state = state;
}

/** A CircleError as one line: the JSON-RPC code when the server answered. */
function describe(error) {
  if (error && error.name === "CircleError") {
    return error.code !== null && error.code !== undefined
      ? `error ${error.code}: ${error.message}`
      : `${error.kind}: ${error.message}`;
  }
  return String(error);
}

async function closeCurrent() {
  if (!current) return;
  const { instance } = current;
  current = null;
  try {
    await instance.disconnect();
  } finally {
    instance.free();
  }
}

/** A connected (and, with a key, signed-in) client for the form's values. */
async function connectedClient() {
  const url = $("url").value.trim();
  const key = $("key").value.trim();
  if (current && current.url === url && current.key === key && current.instance.isConnected) {
    return current.instance;
  }
  await closeCurrent();
  setStatus(`connecting to ${url}…`, "busy");
  // reconnect: a server restart or a dropped network does not need a reload;
  // the client signs in again by itself.
  const instance = new CircleClient(url, { requestTimeoutMs: 30000, reconnect: true });
  try {
    await instance.connect();
    if (key) {
      setStatus("signing in…", "busy");
      await instance.authenticate(key);
    }
  } catch (error) {
    instance.free();
    throw error;
  }
  current = { url, key, instance };
  setStatus(
    key ? `connected to ${url}, signed in as ${instance.address}` : `connected to ${url} (not signed in)`,
    "connected",
  );
  return instance;
}

async function run() {
  if (running) return;
  running = true;
  $("run").disabled = true;
  showOutput("running…", "running");
  try {
    const client = await connectedClient();
    const output = await client.play($("script").value);
    showOutput(output === "" ? "(no output)" : output, "done");
  } catch (error) {
    showOutput(describe(error), "error");
    if (!current || !current.instance.isConnected) {
      setStatus("not connected", "error");
    }
  } finally {
    running = false;
    $("run").disabled = false;
    $("disconnect").disabled = !current;
  }
}

async function disconnect() {
  await closeCurrent();
  $("disconnect").disabled = true;
  setStatus("disconnected", "idle");
}

function defaultUrl() {
  const params = new URLSearchParams(location.search);
  if (params.has("url")) return params.get("url");
  // Served by circle-server --web-root: the WebSocket is on the same origin.
  if (location.protocol === "https:") return `wss://${location.host}/ws`;
  if (location.protocol === "http:") return `ws://${location.host}/ws`;
  return "wss://localhost:8443/ws";
}

async function main() {
  $("url").value = defaultUrl();
  $("run").addEventListener("click", run);
  $("disconnect").addEventListener("click", disconnect);
  $("script").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  try {
    await init();
  } catch (error) {
    setStatus(`could not load the WebAssembly client (build it with examples/web/build.sh): ${error}`, "error");
    return;
  }
  $("run").disabled = false;
  setStatus("ready", "idle");
}

main();
