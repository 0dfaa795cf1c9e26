#!/usr/bin/python3
"""Register the stack's Swift in Keystone and prepare Qinling's storage.

devstack/lib/swift.sh runs this once Swift and Keystone answer, with its
settings in the environment. Idempotent, like keystone-init.py (whose
Keystone client it uses). It ensures, in REGION_NAME:
  service swift of type object-store, with public, internal and admin
    endpoints SWIFT_URL/v1/AUTH_$(project_id)s (the CLI's `openstack object`
    and gophercloud's catalog lookup find it)
  an EC2 credential of the qinling user in project service (S3 through the
    s3api and s3token middlewares), written to EC2_FILE as "access secret"
  the container SWIFT_CONTAINER in the service project's account
"""

import importlib.util
import os
import urllib.error
import urllib.request

_spec = importlib.util.spec_from_file_location(
    "keystone_init", os.path.join(os.path.dirname(os.path.abspath(__file__)), "keystone-init.py")
)
ki = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ki)

SWIFT_URL = os.environ["SWIFT_URL"].rstrip("/")
ENDPOINT = SWIFT_URL + "/v1/AUTH_$(project_id)s"
CONTAINER = os.environ["SWIFT_CONTAINER"]
EC2_FILE = os.environ["EC2_FILE"]


def ensure_service(ks):
    found = [s for s in ks.find("services", type="object-store") if s["name"] == "swift"]
    if found:
        return found[0]["id"]
    _, body = ks.call(
        "POST",
        "/services",
        {"service": {"name": "swift", "type": "object-store", "description": "Object Storage", "enabled": True}},
    )
    ki.log("service swift (object-store) created")
    return body["service"]["id"]


def ensure_endpoints(ks, service_id):
    existing = ks.find("endpoints", service_id=service_id)
    for interface in ("public", "internal", "admin"):
        mine = [e for e in existing if e["interface"] == interface and e.get("region_id") == ki.REGION]
        if not mine:
            ks.call(
                "POST",
                "/endpoints",
                {"endpoint": {"service_id": service_id, "interface": interface, "url": ENDPOINT, "region_id": ki.REGION, "enabled": True}},
            )
            ki.log("object-store endpoint %s %s created" % (interface, ENDPOINT))
        elif mine[0]["url"] != ENDPOINT:
            ks.call("PATCH", "/endpoints/" + mine[0]["id"], {"endpoint": {"url": ENDPOINT, "enabled": True}})


def ensure_ec2(ks, user_id, project_id):
    _, body = ks.call("GET", "/users/%s/credentials/OS-EC2" % user_id)
    creds = [c for c in body["credentials"] if c["tenant_id"] == project_id]
    if creds:
        return creds[0]["access"], creds[0]["secret"]
    _, body = ks.call("POST", "/users/%s/credentials/OS-EC2" % user_id, {"tenant_id": project_id}, ok=(201,))
    ki.log("EC2 credential of qinling in project service created")
    return body["credential"]["access"], body["credential"]["secret"]


def ensure_container(token, project_id):
    req = urllib.request.Request("%s/v1/AUTH_%s/%s" % (SWIFT_URL, project_id, CONTAINER), method="PUT")
    req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    if status not in (201, 202):
        raise SystemExit("swift-init: PUT container %s -> %d" % (CONTAINER, status))


def main():
    admin = ki.Keystone(ki.Keystone().login("admin", os.environ["ADMIN_PASSWORD"], "admin"))
    ensure_endpoints(admin, ensure_service(admin))
    user_id = admin.find("users", name="qinling", domain_id=ki.DOMAIN)[0]["id"]
    project_id = admin.find("projects", name="service", domain_id=ki.DOMAIN)[0]["id"]
    access, secret = ensure_ec2(admin, user_id, project_id)
    fd = os.open(EC2_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("%s %s\n" % (access, secret))
    ensure_container(ki.Keystone().login("qinling", os.environ["SERVICE_PASSWORD"], "service"), project_id)
    ki.log("object-store endpoint %s; container %s of project service" % (ENDPOINT, CONTAINER))


if __name__ == "__main__":
    main()
