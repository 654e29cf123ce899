# Shared by the project's scripts (source it): one way to say what runs and
# one way to get Debian packages.

say() { printf '\n=== %s\n' "$*"; }

# ensure_packages PACKAGE...: installs the Debian packages that are missing.
# As root with apt-get it installs them; otherwise it says in one line what
# to install and exits non-zero (nothing is half-done behind the user's back).
ensure_packages() {
  local missing=() package
  for package in "$@"; do
    # Installed, not merely known: after `apt-get remove` dpkg still knows a
    # package by its leftover configuration files ("deinstall ok config-files").
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "missing Debian packages; install them and run this again: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
}
