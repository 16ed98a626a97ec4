"""The stand-in's SSH server (START_SSH_SERVER): it speaks SSH (paramiko) far enough to be
attacked, and no further. It knows no keys: every public key a client offers is refused and
logged the way Gitea's built-in server logs an unknown key (modules/ssh/ssh.go publicKeyHandler):

    ... modules/ssh [W] Unknown public key: SHA256:... from IP:PORT
    ... modules/ssh [W] Failed authentication attempt from IP:PORT

Passwords and keyboard-interactive are never offered, as with Gitea. No git over SSH."""

import contextlib
import os
import socketserver

import paramiko

from . import log

BANNER = "SSH-2.0-Gitea-standin-lab"
WHERE = "modules/ssh"


def host_key(settings):
    """Gitea's default host key path (APP_DATA_PATH/ssh/gitea.rsa), made at the first start."""
    path = os.path.join(settings.app_data_path, "ssh", "gitea.rsa")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        paramiko.RSAKey.generate(3072).write_private_key_file(path)
    return paramiko.RSAKey.from_private_key_file(path)


class _RefuseEveryKey(paramiko.ServerInterface):
    def __init__(self, remote):
        self.remote = remote

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        log.warn(f"Unknown public key: {key.fingerprint} from {self.remote}", WHERE)
        log.warn(f"Failed authentication attempt from {self.remote}", WHERE)
        return paramiko.AUTH_FAILED


class _Handler(socketserver.BaseRequestHandler):
    key = None  # set by server()

    def handle(self):
        ip, port = self.client_address[0], self.client_address[1]
        remote = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        transport = paramiko.Transport(self.request)
        transport.local_version = BANNER
        transport.add_server_key(self.key)
        with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
            transport.start_server(server=_RefuseEveryKey(remote))
            transport.accept(timeout=30)  # no channel is ever authorised: returns at disconnect
        transport.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def server(settings):
    _Handler.key = host_key(settings)
    return _Server(("0.0.0.0", settings.ssh_listen_port), _Handler)
