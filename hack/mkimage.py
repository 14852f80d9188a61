#!/usr/bin/env python3
"""Write a container image as a single-layer docker archive (the `docker save` layout:
manifest.json, the config JSON, one layer tar), ready for `ctr images import`. No registry, no
docker daemon, Python standard library only. The output is deterministic: entries are sorted,
owned by root, dated 1970-01-01, so the same inputs give the same image ID.

Examples (see hack/provision.sh and hack/node.sh):

  mkimage.py --out pause.tar --tag etcd-operator.local/pause:3.10 \\
      --entrypoint /pause --user 65535:65535 --file bin/pause:/pause
  mkimage.py --out op.tar --tag ghcr.io/etcd-operator/etcd-operator:0.1.0 --base-files \\
      --user 65532:65532 --entrypoint /usr/local/bin/etcd-operator --cmd run \\
      --file target/.../etcd-operator:/usr/local/bin/etcd-operator
"""

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile

EPOCH = "1970-01-01T00:00:00Z"

# --base-files: the users and files a distroless-like image carries (nonroot is 65532, as in
# gcr.io/distroless/static:nonroot, which the project's Dockerfile builds on).
BASE_TEXT = {
    "etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
    "etc/group": "root:x:0:\nnonroot:x:65532:\nnobody:x:65534:\n",
    "etc/nsswitch.conf": "hosts: files dns\n",
}
BASE_DIRS = {"tmp": 0o1777, "home/nonroot": 0o700, "root": 0o700}


class Layer:
    """The files of the one layer, by path without the leading slash."""

    def __init__(self):
        self.entries = {}

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), ("dir", 0o755, None))

    def add(self, path, kind, mode, data=None):
        path = path.strip("/")
        if not path:
            raise SystemExit("mkimage: an entry needs a path below /")
        self._parents(path)
        self.entries[path] = (kind, mode, data)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for path in sorted(self.entries):
                kind, mode, data = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime, info.mode, info.uid, info.gid = 0, mode, 0, 0
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    t.addfile(info)
                elif kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = data
                    t.addfile(info)
                else:
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def split_mode(spec, default):
    """`PATH[:OCTAL]` -> (path, mode)."""
    path, _, mode = spec.partition(":")
    return path, int(mode, 8) if mode else default


def command(value):
    """A JSON list as is, anything else as a one-word command."""
    if value is None:
        return None
    if value.startswith("["):
        return json.loads(value)
    return [value]


def build_layer(args):
    layer = Layer()
    if args.base_files:
        for path, text in BASE_TEXT.items():
            layer.add(path, "file", 0o644, text.encode())
        for path, mode in BASE_DIRS.items():
            layer.add(path, "dir", mode)
    for spec in args.dir:
        path, mode = split_mode(spec, 0o755)
        layer.add(path, "dir", mode)
    for spec in args.file:
        src, sep, rest = spec.partition(":")
        if not sep:
            raise SystemExit(f"mkimage: --file wants SRC:DEST[:MODE], got {spec!r}")
        dest, mode = split_mode(rest, 0o755)
        with open(src, "rb") as f:
            layer.add(dest, "file", mode, f.read())
    if args.busybox_links:
        target = args.busybox_links
        source = next((s.partition(":")[0] for s in args.file
                       if s.partition(":")[2].split(":")[0] == target), None)
        if source is None:
            raise SystemExit(f"mkimage: --busybox-links {target}: no --file puts busybox there")
        applets = subprocess.run([source, "--list-full"], check=True, capture_output=True,
                                 text=True).stdout.split()
        for applet in applets:
            if "/" + applet != target:
                layer.add(applet, "symlink", 0o777, target)
    return layer


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="archive to write")
    p.add_argument("--tag", required=True, help="image reference, NAME:TAG")
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:MODE] host file")
    p.add_argument("--dir", action="append", default=[], help="DEST[:MODE] empty directory")
    p.add_argument("--base-files", action="store_true",
                   help="/etc/passwd, group, nsswitch.conf (nonroot 65532), /tmp, /home/nonroot")
    p.add_argument("--busybox-links", metavar="PATH",
                   help="link every applet of the busybox at PATH (one of the --file entries)")
    p.add_argument("--entrypoint", help="a path or a JSON list")
    p.add_argument("--cmd", help="a word or a JSON list")
    p.add_argument("--user", help="UID[:GID]")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE")
    p.add_argument("--workdir")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    args = p.parse_args()

    layer_bytes = build_layer(args).tar()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    cfg = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + args.env}
    for key, value in (("Entrypoint", command(args.entrypoint)), ("Cmd", command(args.cmd)),
                       ("User", args.user), ("WorkingDir", args.workdir)):
        if value:
            cfg[key] = value
    if args.label:
        cfg["Labels"] = dict(label.split("=", 1) for label in args.label)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "hack/mkimage.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id[len("sha256:"):] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [args.tag],
                            "Layers": [layer_name]}]).encode()
    with tarfile.open(args.out, "w") as out:
        for name, data in ((config_name, config_bytes), (layer_name, layer_bytes),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            out.addfile(info, io.BytesIO(data))
    print(f"mkimage: {args.tag} -> {args.out} ({len(layer_bytes) // 1024} KiB layer)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
