#!/usr/bin/python3
"""Create (or bring up to date) the Keystone resources of the qinling stack.

devstack/lib/keystone.sh runs this after `keystone-manage bootstrap`, with
its settings in the environment. It talks to Keystone's v3 API directly with
the standard library (one admin token for everything; each `openstack` call
costs seconds here) and is idempotent: it looks every resource up by name
first, creates what is missing and corrects what differs.

What it ensures, all in domain Default:
  projects demo, alt_demo, service
  users demo, alt_demo (role member on their project) and qinling (role
    admin on project service), with the passwords from the environment
  service qinling of type function-engine, with public, internal and admin
    endpoints QINLING_ENDPOINT in REGION_NAME
Then it checks that each of those users can get a project-scoped token.
"""

import json
import os
import sys
import urllib.error
import urllib.request

KEYSTONE = os.environ["KEYSTONE_URL"].rstrip("/")  # .../v3
REGION = os.environ["REGION_NAME"]
ENDPOINT = os.environ["QINLING_ENDPOINT"]
DOMAIN = "default"

PROJECTS = ["demo", "alt_demo", "service"]
# user -> (password, project, role)
USERS = {
    "demo": (os.environ["DEMO_PASSWORD"], "demo", "member"),
    "alt_demo": (os.environ["ALT_DEMO_PASSWORD"], "alt_demo", "member"),
    "qinling": (os.environ["SERVICE_PASSWORD"], "service", "admin"),
}


def log(msg):
    print("keystone-init: " + msg, file=sys.stderr, flush=True)


class Keystone:
    def __init__(self, token=None):
        self.token = token

    def call(self, method, path, body=None, ok=(200, 201, 204)):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(KEYSTONE + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("X-Auth-Token", self.token)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, headers, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, headers, raw = e.code, e.headers, e.read()
        if status not in ok:
            raise SystemExit(
                "keystone-init: %s %s -> %d %s" % (method, path, status, raw[:500].decode(errors="replace"))
            )
        return headers, (json.loads(raw) if raw else None)

    def login(self, user, password, project):
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": user, "domain": {"id": DOMAIN}, "password": password}},
                },
                "scope": {"project": {"name": project, "domain": {"id": DOMAIN}}},
            }
        }
        headers, _ = self.call("POST", "/auth/tokens?nocatalog", body, ok=(201,))
        return headers["X-Subject-Token"]

    def find(self, collection, **query):
        q = "&".join("%s=%s" % kv for kv in sorted(query.items()))
        _, body = self.call("GET", "/%s?%s" % (collection, q))
        return body[collection]


def ensure_project(ks, name):
    found = ks.find("projects", name=name, domain_id=DOMAIN)
    if found:
        return found[0]["id"]
    _, body = ks.call("POST", "/projects", {"project": {"name": name, "domain_id": DOMAIN, "enabled": True}})
    log("project %s created" % name)
    return body["project"]["id"]


def ensure_user(ks, name, password, project_id):
    found = ks.find("users", name=name, domain_id=DOMAIN)
    if found:
        uid = found[0]["id"]
        # Setting the password every run keeps it in step with the settings.
        ks.call("PATCH", "/users/" + uid, {"user": {"password": password, "enabled": True, "default_project_id": project_id}})
        return uid
    _, body = ks.call(
        "POST",
        "/users",
        {"user": {"name": name, "domain_id": DOMAIN, "password": password, "enabled": True, "default_project_id": project_id}},
    )
    log("user %s created" % name)
    return body["user"]["id"]


def role_id(ks, name):
    found = ks.find("roles", name=name)
    if not found:
        raise SystemExit("keystone-init: role %s missing (keystone-manage bootstrap makes it)" % name)
    return found[0]["id"]


def ensure_service(ks):
    found = [s for s in ks.find("services", type="function-engine") if s["name"] == "qinling"]
    if found:
        return found[0]["id"]
    _, body = ks.call(
        "POST",
        "/services",
        {"service": {"name": "qinling", "type": "function-engine", "description": "Function Engine", "enabled": True}},
    )
    log("service qinling (function-engine) created")
    return body["service"]["id"]


def ensure_endpoints(ks, service_id):
    existing = ks.find("endpoints", service_id=service_id)
    for interface in ("public", "internal", "admin"):
        mine = [e for e in existing if e["interface"] == interface and e.get("region_id") == REGION]
        for extra in mine[1:]:
            ks.call("DELETE", "/endpoints/" + extra["id"])
        if not mine:
            ks.call(
                "POST",
                "/endpoints",
                {"endpoint": {"service_id": service_id, "interface": interface, "url": ENDPOINT, "region_id": REGION, "enabled": True}},
            )
            log("endpoint %s %s created" % (interface, ENDPOINT))
        elif mine[0]["url"] != ENDPOINT or not mine[0].get("enabled", True):
            ks.call("PATCH", "/endpoints/" + mine[0]["id"], {"endpoint": {"url": ENDPOINT, "enabled": True}})
            log("endpoint %s set to %s" % (interface, ENDPOINT))


def main():
    ks = Keystone(Keystone().login("admin", os.environ["ADMIN_PASSWORD"], "admin"))
    projects = {name: ensure_project(ks, name) for name in PROJECTS}
    for user, (password, project, role) in USERS.items():
        uid = ensure_user(ks, user, password, projects[project])
        ks.call("PUT", "/projects/%s/users/%s/roles/%s" % (projects[project], uid, role_id(ks, role)))
    ensure_endpoints(ks, ensure_service(ks))
    for user, (password, project, _) in USERS.items():
        Keystone().login(user, password, project)
    log("projects %s; users %s; function-engine endpoint %s" % (", ".join(PROJECTS), ", ".join(USERS), ENDPOINT))


if __name__ == "__main__":
    main()
