"""Run with .venv-storage's python: asyncssh's SFTP server over ROOT, for the remote-input tests.

    python sftp_server.py PORT ROOT HOST_KEY USER PASSWORD AUTHORIZED_KEYS

Logs in USER by PASSWORD or by a key in AUTHORIZED_KEYS; serves ROOT as /.
"""

import asyncio
import sys

import asyncssh

PORT, ROOT, HOST_KEY, USER, PASSWORD, AUTHORIZED = sys.argv[1:7]


class Server(asyncssh.SSHServer):
    def begin_auth(self, username):
        return True

    def password_auth_supported(self):
        return True

    def validate_password(self, username, password):
        return username == USER and password == PASSWORD


async def main():
    await asyncssh.listen("127.0.0.1", int(PORT), server_factory=Server, server_host_keys=[HOST_KEY],
                          authorized_client_keys=AUTHORIZED,
                          sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=ROOT))
    print("ready", flush=True)
    await asyncio.Future()


asyncio.run(main())
