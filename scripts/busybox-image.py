#!/usr/bin/python3
"""Builds a small OCI image layout from Debian's busybox-static: two gzip layers
(/bin/busybox with links for common applets, and /etc/hello, passwd and group), a config and a history.

usage: busybox-image.py OUTDIR [TAG]
"""
import tarfile, io, json, hashlib, gzip, os, sys
out=sys.argv[1]
tag=sys.argv[2] if len(sys.argv) > 2 else "latest"
os.makedirs(out+"/blobs/sha256", exist_ok=True)
def put(b):
    d=hashlib.sha256(b).hexdigest(); open(f"{out}/blobs/sha256/{d}","wb").write(b); return "sha256:"+d, len(b)
APPLETS=("sh cat echo ls sleep id pwd env true false mkdir rm touch sha256sum head tail dd wc hostname kill "
         "ps stat readlink test printf uname tr cut sed grep seq yes cp mv ln chmod sync date tty stty "
         "wget nc httpd ip").split()
def layer(files):
    bio=io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w") as t:
        for name,data in files:
            if isinstance(data, str):  # a symlink to `data`
                ti=tarfile.TarInfo(name); ti.type=tarfile.SYMTYPE; ti.linkname=data; t.addfile(ti); continue
            ti=tarfile.TarInfo(name); ti.size=len(data); ti.mode=0o755; t.addfile(ti, io.BytesIO(data))
    raw=bio.getvalue(); gz=gzip.compress(raw, mtime=0)
    return raw, gz
layers=[]; diffs=[]
passwd=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
group=b"root:x:0:\nnogroup:x:65534:\n"
for files in ([("bin/busybox", open("/bin/busybox","rb").read())] + [("bin/"+a, "busybox") for a in APPLETS],
              [("etc/hello", b"hi\n"), ("etc/passwd", passwd), ("etc/group", group)]):
    raw,gz=layer(files); diffs.append("sha256:"+hashlib.sha256(raw).hexdigest())
    d,s=put(gz); layers.append({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":d,"size":s})
cfg={"architecture":"amd64","os":"linux","created":"2024-05-01T00:00:00Z","config":{"Cmd":["/bin/busybox","sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":diffs},
 "history":[{"created":"2024-05-01T00:00:00Z","created_by":"ADD busybox /bin/"},{"created_by":"CMD sh","empty_layer":True},{"created_by":"ADD hello /etc/"}]}
cd,cs=put(json.dumps(cfg).encode())
m={"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":cs},"layers":layers}
md,ms=put(json.dumps(m).encode())
json.dump({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":md,"size":ms,"annotations":{"org.opencontainers.image.ref.name":tag}}]}, open(out+"/index.json","w"))
open(out+"/oci-layout","w").write('{"imageLayoutVersion":"1.0.0"}')
