// A test wallet for the browser tests: an EIP-1193 provider, injected as
// `window.ethereum` the way a wallet extension does it, that signs with a
// real secp256k1 key through ethers' `Wallet` (npm, vendored next to this
// file by .ci/browser-tests.sh). Never for real keys: the key is in the page.
//
//   const { injectTestWallet } = await import("/test-wallet/provider.js");
//   await injectTestWallet("0x4c08…", "ok");   // or "reject" (code 4001)
//
// It answers `eth_requestAccounts` with the wallet's address and
// `personal_sign` ([hex message, address]) with `wallet.signMessage` of the
// message's bytes, as MetaMask does; with "reject", every request fails with
// EIP-1193's 4001 "User rejected the request.". It records the methods it
// was asked in `window.ethereum.calls`, then announces itself with the
// `ethereum#initialized` event pages listen for.

import { Wallet, getBytes } from "./ethers.min.js";

function rejected() {
  return Object.assign(new Error("User rejected the request."), { code: 4001 });
}

export function injectTestWallet(privateKey, behaviour = "ok") {
  const wallet = new Wallet(privateKey);
  const provider = {
    isTestWallet: true,
    calls: [],
    async request({ method, params = [] }) {
      provider.calls.push(method);
      if (behaviour === "reject") throw rejected();
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [wallet.address.toLowerCase()];
        case "personal_sign": {
          const [message, account] = params;
          if (account.toLowerCase() !== wallet.address.toLowerCase()) {
            throw Object.assign(new Error(`unknown account ${account}`), { code: 4100 });
          }
          return wallet.signMessage(getBytes(message));
        }
        default:
          throw Object.assign(new Error(`unsupported method ${method}`), { code: 4200 });
      }
    },
  };
  window.ethereum = provider;
  window.dispatchEvent(new Event("ethereum#initialized"));
  return wallet.address;
}
