#!/usr/bin/env python3
"""Rewrites a layerfs cache record in a registry so that it lies about one layer's ID.

retarget.py REGISTRY REPOSITORY TAG TARGET
Fetches the record under TAG, replaces the layer ID of output TARGET (in its outputs, its
layer list and the manifest's result annotation) with sha256:000...0, uploads the changed
config blob and PUTs the manifest again under TAG: every digest in the record is right and
the record agrees with itself, the layer's ID is not."""
import hashlib
import http.client
import json
import sys

registry, repo, tag, target = sys.argv[1:5]
conn = http.client.HTTPConnection(registry, timeout=30)


def call(method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        sys.exit("%s %s: %d %s" % (method, path, r.status, data))
    return r, data


_, m = call("GET", "/v2/%s/manifests/%s" % (repo, tag),
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
man = json.loads(m)
_, c = call("GET", "/v2/%s/blobs/%s" % (repo, man["config"]["digest"]))
rec = json.loads(c)
old = [o["layer"] for o in rec["outputs"] if o["target"] == target][0]
fake = "sha256:" + "0" * 64
for o in rec["outputs"]:
    if o["layer"] == old:
        o["layer"] = fake
for l in rec["layers"]:
    if l["id"] == old:
        l["id"] = fake
    if l["parent"] == old:
        l["parent"] = fake
data = json.dumps(rec, separators=(",", ":"), sort_keys=True).encode()
digest = "sha256:" + hashlib.sha256(data).hexdigest()
r, _ = call("POST", "/v2/%s/blobs/uploads/" % repo)
loc = r.getheader("Location")
call("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + digest, body=data,
     headers={"Content-Type": "application/octet-stream"})
result = {"exit_code": rec["exit_code"], "outputs": rec["outputs"]}
man["annotations"]["dev.layerfs.exec.result"] = json.dumps(result, separators=(",", ":"),
                                                          sort_keys=True)
man["config"]["digest"] = digest
man["config"]["size"] = len(data)
call("PUT", "/v2/%s/manifests/%s" % (repo, tag), body=json.dumps(man).encode(),
     headers={"Content-Type": man["mediaType"]})
