// The circles browser console: a thin page around the WASM client
// (circle_client_ws's `js` bindings, built into ./pkg by ../build.sh).
//
// The page keeps one CircleClient and reuses its connection while the URL
// and the identity (the wallet, a developer key, or none) stay the same;
// changing either opens a fresh connection (a sign-in belongs to one
// connection). Scripts run streamed (playStream): each printed line shows
// in #output as it is printed, and Stop cancels the script on the server.
// #output's data-state ("running", "done", "error", "cancelled") and
// data-lines (lines shown so far) let tests follow a run.
//
// With a wallet (an EIP-1193 provider at window.ethereum, announced at load
// or later with the `ethereum#initialized` event), "Sign in with wallet"
// asks it for the account and a personal_sign signature: the key never
// reaches this page. The secret-key field is a collapsed developer option.

import init, { CircleClient } from "./pkg/circle_console.js";

const $ = (id) => document.getElementById(id);

/** The identity of a client signed in through the wallet. */
const WALLET = "wallet";

/** The live client: { url, identity, instance }, or null; identity is
 * WALLET, a developer key, or "" (not signed in). */
let current = null;
let running = false;
/** The streamed run in progress (a CirclePlay), for Stop. */
let currentPlay = null;

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
  // A wallet sign-in holds until the URL changes or a key is typed.
  const identity = key || (current && current.url === url && current.identity === WALLET ? WALLET : "");
  if (current && current.url === url && current.identity === identity && current.instance.isConnected) {
    return current.instance;
  }
  return openClient(url, identity);
}

/** Opens a fresh client for `url` and signs in as `identity`. */
async function openClient(url, identity) {
  await closeCurrent();
  setStatus(`connecting to ${url}…`, "busy");
  // reconnect: a server restart or a dropped network does not need a reload;
  // the client signs in again by itself (with a wallet, the wallet asks).
  // signTimeoutMs: how long the wallet's prompt may wait for its user.
  const instance = new CircleClient(url, { requestTimeoutMs: 30000, signTimeoutMs: 120000, reconnect: true });
  try {
    await instance.connect();
    if (identity === WALLET) {
      setStatus("waiting for the wallet…", "busy");
      await instance.authenticateWithWallet(window.ethereum);
    } else if (identity) {
      setStatus("signing in…", "busy");
      await instance.authenticate(identity);
    }
  } catch (error) {
    instance.free();
    throw error;
  }
  current = { url, identity, instance };
  const how = identity === WALLET ? " (wallet)" : "";
  setStatus(
    identity ? `connected to ${url}, signed in as ${instance.address}${how}` : `connected to ${url} (not signed in)`,
    "connected",
  );
  return instance;
}

async function signInWithWallet() {
  if (running) return;
  running = true;
  $("wallet").disabled = true;
  try {
    $("key").value = "";
    await openClient($("url").value.trim(), WALLET);
    showOutput("signed in with the wallet", "idle");
  } catch (error) {
    showOutput(describe(error), "error");
    setStatus("not signed in", "error");
  } finally {
    running = false;
    $("wallet").disabled = false;
    $("disconnect").disabled = !current;
  }
}

/** Shows the wallet button once the page sees an EIP-1193 provider. */
function detectWallet() {
  const found = typeof window.ethereum?.request === "function";
  $("wallet").hidden = !found;
  $("wallet-hint").hidden = found;
}

async function run() {
  if (running) return;
  running = true;
  $("run").disabled = true;
  showOutput("running…", "running");
  const lines = [];
  const showLines = () => {
    $("output").textContent = lines.join("\n");
    $("output").dataset.lines = String(lines.length);
  };
  $("output").dataset.lines = "0";
  try {
    const client = await connectedClient();
    currentPlay = client.playStream($("script").value, (line) => {
      lines.push(line);
      showLines();
    });
    $("stop").disabled = false;
    // `tail` is what the lines did not show: the script's value.
    const { tail } = await currentPlay.done;
    if (tail !== "") lines.push(tail);
    const output = lines.join("\n");
    showOutput(output === "" ? "(no output)" : output, "done");
  } catch (error) {
    if (error && error.kind === "Cancelled") {
      lines.push("(cancelled)");
      showOutput(lines.join("\n"), "cancelled");
    } else {
      showOutput(describe(error), "error");
    }
    if (!current || !current.instance.isConnected) {
      setStatus("not connected", "error");
    }
  } finally {
    if (currentPlay) {
      currentPlay.free();
      currentPlay = null;
    }
    running = false;
    $("run").disabled = false;
    $("stop").disabled = true;
    $("disconnect").disabled = !current;
  }
}

/** Stop: asks the server to cancel the running script; the run then ends
 * "cancelled" when the server's -32006 answer comes. */
async function stop() {
  if (!currentPlay) return;
  $("stop").disabled = true;
  try {
    await currentPlay.cancel();
  } catch (error) {
    showOutput(describe(error), "error");
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
  $("stop").addEventListener("click", stop);
  $("wallet").addEventListener("click", signInWithWallet);
  // Wallets inject window.ethereum before or after the page's scripts run.
  window.addEventListener("ethereum#initialized", detectWallet);
  detectWallet();
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
