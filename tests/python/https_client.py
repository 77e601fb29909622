"""POSTs standard input to the URL in argv[1] with requests, configured only
by the environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE), as a
container wired by `traffic-guardian setup` would be, and writes the
response body to standard output, byte for byte.

Exit status: 0 on a 2xx answer, 1 on any other answer, 2 when the request
failed (proxy, TLS or connection error), with the reason on stderr.
"""

import sys

import requests


def main() -> int:
    body = sys.stdin.buffer.read()
    try:
        response = requests.post(
            sys.argv[1],
            data=body,
            headers={"Content-Type": "text/plain"},
            timeout=30,
        )
    except requests.RequestException as err:
        print(f"request failed: {err}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(response.content)
    sys.stdout.buffer.flush()
    if not response.ok:
        print(f"HTTP {response.status_code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
