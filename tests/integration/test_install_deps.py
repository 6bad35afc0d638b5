#!/usr/bin/env python3
"""scripts/install-deps.sh (`make deps`, `make test-deps`), run against stand-ins
for dpkg-query, apt-get, node and npm first in PATH (nothing is installed and
no network is used): a failing `npm install` of the test peers ends the run
with what failed, npm's own reason and how to try again, not a bare non-zero
exit."""

import os
import subprocess

from harness import ROOT, check, contains, eq, main, test

SCRIPT = os.path.join(ROOT, "scripts", "install-deps.sh")

STUBS = {
    # Every Debian package reads as installed: apt-get is never reached.
    "dpkg-query": "#!/bin/sh\nprintf 'install ok installed'\n",
    "apt-get": "#!/bin/sh\necho 'apt-get must not run here' >&2\nexit 99\n",
    "sudo": "#!/bin/sh\necho 'sudo must not run here' >&2\nexit 99\n",
    "node": "#!/bin/sh\nexit 0\n",
    # As npm does: --silent (loglevel silent) prints nothing, even its errors.
    "npm": "#!/bin/sh\n"
           "[ -n \"$NPM_OK\" ] && { mkdir -p node_modules; exit 0; }\n"
           "for a in \"$@\"; do [ \"$a\" = --silent ] && exit 1; done\n"
           "echo 'npm error code E404' >&2\n"
           "echo 'npm error 404 Not Found - GET https://registry.npmjs.org/ws' >&2\n"
           "exit 1\n",
}


@test(timeout=60)
def a_failing_npm_install_says_what_failed(t):
    stubs = os.path.join(t.tmp, "bin")
    os.makedirs(stubs)
    for name, text in STUBS.items():
        with open(os.path.join(stubs, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(stubs, name), 0o755)
    work = os.path.join(t.tmp, "checkout")
    os.makedirs(os.path.join(work, "tests"))
    with open(os.path.join(work, "tests", "package.json"), "w") as f:
        f.write('{"private": true, "dependencies": {"ws": "^8"}}\n')
    env = dict(os.environ, PATH=stubs + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run(["bash", SCRIPT, "--test"], cwd=work, env=env, capture_output=True,
                       timeout=30)
    out, err = r.stdout.decode(), r.stderr.decode()
    check(r.returncode != 0, "a failed npm install fails the run", out + err)
    check("must not run" not in err, "no package manager was run", err)
    contains(err, "npm error 404 Not Found", "npm's own reason is shown")
    contains(err, "npm install", "what failed is named")
    contains(err, "install-deps.sh --test", "how to try again is said")
    check(not os.path.exists(os.path.join(work, "tests", "node_modules", ".installed")),
          "nothing marked installed")
    eq(out, "", "nothing on stdout")

    # Positive control: the same stand-ins with an npm that succeeds.
    r = subprocess.run(["bash", SCRIPT, "--test"], cwd=work, env=dict(env, NPM_OK="1"),
                       capture_output=True, timeout=30)
    eq(r.returncode, 0, "a successful npm install (%s)" % r.stderr.decode())
    check(os.path.exists(os.path.join(work, "tests", "node_modules", ".installed")),
          "marked installed")


if __name__ == "__main__":
    main()
