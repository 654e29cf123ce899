#!/usr/bin/env python3
"""Wallet sign-in in headless Chromium or Firefox, with a real test wallet.

Against the console page served by a running `circle-server --tls --auth
--web-root examples/web/www`, with the test wallet (examples/web/test-wallet:
an EIP-1193 provider around ethers' `Wallet`, which .ci/browser-tests.sh
installs with npm and copies to www/test-wallet/) injected into the page as a
wallet extension injects `window.ethereum`:

  1. the JS bindings: `authenticateWithWallet(window.ethereum)` signs in (the
     signature is made by ethers, checked by the client, verified by the
     server) and plays as the wallet's key; a wallet that rejects (EIP-1193
     code 4001) makes the promise reject with a CircleError of kind
     "SignerRejected" and code 4001;
  2. the console page: no wallet button without a provider; with one, the
     button appears, a click signs in, the status names the address, a
     script runs as the caller; a rejecting wallet shows "error 4001"; a
     screenshot is saved.

Certificates are verified for real (see console_page_test.py, whose WebDriver
client this reuses).

Usage: wallet_page_test.py --url https://localhost:PORT/ --out DIR
           [--browser chromium|firefox] [--driver PATH] [--firefox-profile DIR]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from console_page_test import (BROWSERS, FIREFOX_ENV, KEY, KEY_ADDRESS, KEY_PUBLIC, WebDriver,
                               free_port, run_script, wait_for)

# The page's module URL and the test wallet, both served by circle-server.
BINDINGS = "/pkg/circle_console.js"
TEST_WALLET = "/test-wallet/provider.js"

# The page-side scripts run as module scripts appended to the page, in the
# page's own JavaScript realm, as a wallet extension's injected script and
# the page's own code do. (Scripts that WebDriver runs directly live in a
# separate realm in Firefox: the page could not call a provider made there,
# and a module imported there is a second, uninitialised copy.) Each one
# leaves its JSON result in <html data-circles-test-result>.
RUN_IN_PAGE = """
const [source, done] = arguments;
const root = document.documentElement;
delete root.dataset.circlesTestResult;
const script = document.createElement("script");
script.type = "module";
script.textContent = source;
document.head.appendChild(script);
const started = Date.now();
(function poll() {
  const value = root.dataset.circlesTestResult;
  if (value !== undefined) return done(JSON.parse(value));
  if (Date.now() - started > 20000) return done({ failed: "the page script gave no result" });
  setTimeout(poll, 50);
})();
"""

# Injects the wallet, then signs in through the bindings and plays.
BINDINGS_FLOW = """
import { injectTestWallet } from %(wallet)s;
import init, { CircleClient } from %(bindings)s;
const report = (value) => { document.documentElement.dataset.circlesTestResult = JSON.stringify(value); };
try {
  await init();
  injectTestWallet(%(key)s, %(behaviour)s);
  const client = new CircleClient(%(url)s, { signTimeoutMs: 10000 });
  await client.connect();
  try {
    const signedIn = await client.authenticateWithWallet(window.ethereum);
    const output = await client.play("CALLER_PUBLIC_KEY");
    report({ signedIn, output, address: client.address, calls: window.ethereum.calls });
  } catch (e) {
    report({ name: e.name, kind: e.kind, code: e.code, message: e.message, calls: window.ethereum.calls });
  } finally {
    await client.disconnect();
    delete window.ethereum;
  }
} catch (e) {
  report({ failed: String(e) });
}
"""

INJECT = """
import { injectTestWallet } from %(wallet)s;
document.documentElement.dataset.circlesTestResult =
  JSON.stringify(injectTestWallet(%(key)s, %(behaviour)s));
"""


def page_script(template, **values):
    """`template` with each value as a JavaScript literal (JSON)."""
    values.setdefault("wallet", TEST_WALLET)
    values.setdefault("bindings", BINDINGS)
    return template % {name: json.dumps(value) for name, value in values.items()}


class Driver(WebDriver):
    """Adds the one command this test needs on top of console_page_test's."""

    def run_in_page(self, source):
        """Runs a module script in the page's realm and returns its result."""
        return self.call("POST", self.s("/execute/async"),
                         {"script": RUN_IN_PAGE, "args": [source]})

    def displayed(self, css):
        return self.call("GET", self.s(f"/element/{self.find(css)}/displayed"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--browser", choices=sorted(BROWSERS), default="chromium")
    parser.add_argument("--driver")
    parser.add_argument("--firefox-profile")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    browser = args.browser
    driver_binary = args.driver or BROWSERS[browser]
    if browser == "firefox" and not args.firefox_profile:
        parser.error("--browser firefox needs --firefox-profile")
    ws_url = args.url.replace("https://", "wss://").rstrip("/") + "/ws"

    passed, failed = 0, 0

    def check(name, condition, detail=""):
        nonlocal passed, failed
        if condition:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}: {detail}")

    port = free_port()
    driver_name = os.path.basename(driver_binary)
    log = open(os.path.join(args.out, f"{driver_name}-wallet.log"), "w")
    driver_env = dict(os.environ, **(FIREFOX_ENV if browser == "firefox" else {}))
    driver_process = subprocess.Popen(
        [driver_binary, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT, env=driver_env)
    driver = Driver(f"http://127.0.0.1:{port}")
    scratch = tempfile.mkdtemp(prefix=f"wallet-page-{browser}-")
    try:
        wait_for(driver_name, lambda: driver.call("GET", "/status", timeout=2).get("ready"))
        if browser == "firefox":
            profile = os.path.join(scratch, "profile")
            shutil.copytree(args.firefox_profile, profile,
                            ignore=shutil.ignore_patterns("lock", ".parentlock"))
        else:
            profile = scratch
        driver.start(browser, profile)
        driver.open(args.url)
        wait_for("the page to load its client",
                 lambda: driver.attribute("#status", "data-state") == "idle")

        # Before any wallet is injected, the page offers no wallet button.
        check("no wallet, no wallet button", driver.displayed("#wallet") is False)
        check("the secret-key field is a collapsed developer option",
              driver.property("#developer", "open") is False)

        # 1. The bindings, with the ethers wallet.
        result = driver.run_in_page(
            page_script(BINDINGS_FLOW, behaviour="ok", key=KEY, url=ws_url))
        check("authenticateWithWallet signs in with the ethers wallet and plays as its key",
              result.get("signedIn") is True and result.get("output") == KEY_PUBLIC
              and result.get("address") == KEY_ADDRESS, result)
        check("the wallet was asked for its account, then to sign",
              result.get("calls") == ["eth_requestAccounts", "personal_sign"], result)
        result = driver.run_in_page(
            page_script(BINDINGS_FLOW, behaviour="reject", key=KEY, url=ws_url))
        check("a wallet rejecting with 4001 is a CircleError SignerRejected, code 4001",
              result.get("name") == "CircleError" and result.get("kind") == "SignerRejected"
              and result.get("code") == 4001, result)

        # 2. The console page's button, with the same wallet.
        driver.run_in_page(page_script(INJECT, behaviour="reject", key=KEY))
        wait_for("the wallet button", lambda: driver.displayed("#wallet"))
        driver.click("#wallet")
        state = wait_for("the rejection", lambda: (s := driver.attribute("#output", "data-state"))
                         == "error" and s)
        output = driver.text("#output")
        check("a rejected wallet prompt shows error 4001",
              output.startswith("error 4001:"), f"{state}: {output}")

        injected = driver.run_in_page(page_script(INJECT, behaviour="ok", key=KEY))
        check("the test wallet is injected", injected == KEY_ADDRESS, injected)
        driver.click("#wallet")
        status = wait_for("the wallet sign-in",
                          lambda: KEY_ADDRESS in (t := driver.text("#status")) and t)
        check("the status names the wallet's address", "(wallet)" in status, status)
        state, output = run_script(driver, 'print("signed by the wallet");\nCALLER_PUBLIC_KEY')
        check("after the wallet sign-in, the script runs as the wallet's key",
              state == "done" and output == f"signed by the wallet\n{KEY_PUBLIC}",
              f"{state}: {output!r}")
        path = os.path.join(args.out, f"wallet-page-{browser}.png")
        size = driver.screenshot(path)
        check("screenshot saved", size > 1000, f"{size} bytes")
        print(f"screenshot: {path}")
    except (AssertionError, RuntimeError, OSError, KeyError) as error:
        failed += 1
        print(f"FAIL {error}")
    finally:
        driver.stop()
        driver_process.terminate()
        try:
            driver_process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            driver_process.kill()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"wallet-page ({browser}): {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
