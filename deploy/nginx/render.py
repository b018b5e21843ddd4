#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""deploy/nginx/cca.conf for processes on this machine: the compose file's
upstream addresses (cca-a:8000, cca-b:8000) replaced by loopback ports, the
listen port by another, wrapped in a complete nginx.conf whose pid, logs and
temporary files stay in one directory. Used by tests/integration/
test_nginx_pair.py and by the benchmark (bench/run.py, S2), so both run the
very file compose uses.

    python3 deploy/nginx/render.py DIR LISTEN_PORT PORT_A PORT_B
        writes DIR/nginx.conf and DIR/cca.conf; run: nginx -p DIR -c DIR/nginx.conf
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def render(prefix, listen_port, ports, worker_processes=1, worker_connections=1024):
    """Write prefix/nginx.conf (and prefix/cca.conf); return the former's path."""
    with open(os.path.join(HERE, "cca.conf")) as f:
        site = f.read()
    subst = [("listen 8080;", "listen 127.0.0.1:%d;" % listen_port)]
    subst += [("cca-%s:8000" % n, "127.0.0.1:%d" % p) for n, p in zip("ab", ports)]
    for old, new in subst:
        if old not in site:
            raise RuntimeError("deploy/nginx/cca.conf has no '%s'" % old)
        site = site.replace(old, new)
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    with open(os.path.join(prefix, "cca.conf"), "w") as f:
        f.write(site)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""%(user)sworker_processes %(wp)d;
daemon off;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections %(wc)d; }
http {
  access_log off;
  client_body_temp_path %(d)s/tmp; proxy_temp_path %(d)s/tmp; fastcgi_temp_path %(d)s/tmp;
  uwsgi_temp_path %(d)s/tmp; scgi_temp_path %(d)s/tmp;
  include %(d)s/cca.conf;
}
""" % {"user": "user root;\n" if os.geteuid() == 0 else "", "wp": worker_processes,
       "wc": worker_connections, "d": prefix})
    return conf


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    print(render(sys.argv[1], int(sys.argv[2]), [int(sys.argv[3]), int(sys.argv[4])]))
