#!/usr/bin/env python3
"""Offline checks of the deployment: Dockerfile, cloudbuild.yaml and terraform/.

Run by scripts/check-deploy.sh, which installs what this needs (python-hcl2, PyYAML) and the
provider schemas (the npm packages @cdktf/provider-google and @cdktf/provider-random, which
carry the google 6.50 and random provider schemas as generated code). Nothing here talks to
Google Cloud. What is checked:

- every .tf file parses (python-hcl2; `terraform fmt -check` runs in the shell script);
- every block and attribute of every resource exists in the provider schema, and every
  required one is set; every var./local./resource reference names something declared;
- every binary of the workspace (cargo metadata) has a Dockerfile target, and every deployed
  one a Cloud Run service or job whose image is a Terraform variable; every job but migrate
  has a Cloud Scheduler trigger; every job subcommand exists in the jobs binary;
- every environment variable Terraform sets is in the README configuration table, the ones
  the binaries need in production are set, and PORT (Cloud Run's) is not;
- the URL map, rendered from routes.json the way Terraform's dynamic blocks render it, has
  exactly the route table's rules, services and default service;
- the service accounts get exactly the roles of the table in docs/deploy.md, and nothing
  grants a role authoritatively (no *_iam_binding / *_iam_policy);
- the Dockerfile's builder runs the test command's cargo build (plus --release --locked),
  every runtime image runs as nonroot; cloudbuild.yaml builds and pushes every target,
  runs fmt, clippy and the tests first, and migrates before deploying.

Prints one line per check and a summary line `deploy: N passed, M failed`; exits 1 on failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import hcl2
import yaml

ROOT = Path(__file__).resolve().parent.parent
TF_DIR = ROOT / "terraform"
SCHEMA_DIR = Path(os.environ.get("DEPLOY_CHECK_SCHEMAS", Path.home() / ".cache/registry-deploy-check/schemas"))

# Binaries that are not deployed: the benchmark runs on a developer's machine.
NOT_DEPLOYED = {"bench": "benchmark tool, run by hand"}
# The self-hosting binary has an image but no Cloud Run resource.
SELF_HOST_ONLY = {"registry"}
CLOUD_RUN_SERVICES = {"blob", "manifest", "upload", "api"}

# The only roles each service account gets (docs/deploy.md, "Permissions"). The scope says where.
EXPECTED_ROLES = {
    "blob": {
        ("bucket", "roles/storage.objectViewer"),
        ("itself", "roles/iam.serviceAccountTokenCreator"),
        ("instance", "roles/cloudsql.client"),
        ("secrets:service", "roles/secretmanager.secretAccessor"),
    },
    "manifest": {
        ("bucket", "roles/storage.objectUser"),
        ("itself", "roles/iam.serviceAccountTokenCreator"),
        ("instance", "roles/cloudsql.client"),
        ("secrets:service", "roles/secretmanager.secretAccessor"),
    },
    "upload": {
        ("bucket", "roles/storage.objectUser"),
        ("instance", "roles/cloudsql.client"),
        ("secrets:service", "roles/secretmanager.secretAccessor"),
    },
    "api": {
        ("instance", "roles/cloudsql.client"),
        ("secrets:service", "roles/secretmanager.secretAccessor"),
    },
    "job-migrate": {
        ("instance", "roles/cloudsql.client"),
        ("secrets:database", "roles/secretmanager.secretAccessor"),
    },
    "job-run-all": {
        ("bucket", "roles/storage.objectUser"),
        ("instance", "roles/cloudsql.client"),
        ("secrets:events", "roles/secretmanager.secretAccessor"),
    },
    "job-deliver": {
        ("instance", "roles/cloudsql.client"),
        ("secrets:events", "roles/secretmanager.secretAccessor"),
    },
    "scheduler": {("scheduled jobs", "roles/run.invoker")},
}

# Variables the binaries need in production (common/src/config/).
REQUIRED_SERVICE_ENV = {
    "HOST": "only a non-loopback address receives Cloud Run traffic",
    "STORAGE_BACKEND": "gcs, or blobs land on the instance's memory",
    "BUCKET_NAME": "required with STORAGE_BACKEND=gcs",
    "DATABASE_URL": "PostgreSQL, or metadata lands in an instance-local SQLite file",
    "DB_MIGRATE_ON_START": "false: the migrate job migrates, not every cold start",
    "AUTH_MODE": "a non-loopback HOST refuses to start without authentication",
}
REQUIRED_JOB_ENV = {"STORAGE_BACKEND", "BUCKET_NAME", "DATABASE_URL"}
# Each AUTH_MODE's own variables (AuthConfig::validate): some path of Terraform must set them.
AUTH_MODE_ENV = {
    "basic": {"HTPASSWD_FILE", "AUTH_RULES_FILE"},
    "token": {"JWT_SECRET", "AUTH_RULES_FILE", "HTPASSWD_FILE", "TOKEN_REALM", "TOKEN_SIGNING_KEY_FILE", "JWT_PUBLIC_KEYS_FILE"},
    "delegated": {"DELEGATED_PERMISSION_URL"},
    "none": {"ALLOW_ANONYMOUS_REMOTE"},
}
# Set by Cloud Run itself; a service that sets it is refused.
RESERVED_ENV = {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}

META_KEYS = {"__start_line__", "__end_line__", "count", "for_each", "depends_on", "lifecycle", "provider", "dynamic"}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"     - {p}")
        else:
            self.passed += 1
            print(f"ok   {name}")


# --- Terraform loading ------------------------------------------------------------------------

class Terraform:
    def __init__(self, directory: Path) -> None:
        self.files: dict[str, dict] = {}
        self.resources: dict[tuple[str, str], dict] = {}
        self.locals: dict[str, object] = {}
        self.variables: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.parse_errors: list[str] = []
        for path in sorted(directory.glob("*.tf")):
            try:
                with path.open() as f:
                    self.files[path.name] = hcl2.load(f)
            except Exception as e:  # the parser raises several kinds
                self.parse_errors.append(f"{path.name}: {e}")
        for name, doc in self.files.items():
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        if (rtype, rname) in self.resources:
                            self.parse_errors.append(f"{name}: {rtype}.{rname} declared twice")
                        self.resources[(rtype, rname)] = body
            for block in doc.get("locals", []):
                for key, value in block.items():
                    if key in META_KEYS:
                        continue
                    if key in self.locals:
                        self.parse_errors.append(f"{name}: local.{key} declared twice")
                    self.locals[key] = unwrap(value)
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)

    def resource(self, rtype: str, rname: str) -> dict:
        return self.resources.get((rtype, rname), {})


def unwrap(value):
    """python-hcl2 wraps attribute values of a body in a one-element list."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def attr(body: dict, key: str, default=None):
    return unwrap(body[key]) if key in body else default


def blocks(body: dict, key: str) -> list[dict]:
    value = body.get(key, [])
    return value if isinstance(value, list) else [value]


def dynamic_blocks(body: dict, key: str) -> list[dict]:
    """The `dynamic "<key>"` blocks of a body: each {for_each, content}."""
    found = []
    for entry in body.get("dynamic", []):
        if key in entry:
            found.append(entry[key])
    return found


def strings(value):
    """Every string inside a parsed value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def expr(value) -> str:
    """The inside of a "${...}" expression string."""
    value = unwrap(value)
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return str(value)


# --- provider schemas (from the cdktf prebuilt providers' generated code) -------------------

class Schema:
    """Attribute and block names of one resource type, nested, with the required ones."""

    FN = re.compile(r"^function (\w+)ToTerraform\(struct\) \{(.*?)^\}", re.S | re.M)
    ENTRY = re.compile(r"^\s+(\w+): (.*?),?$", re.M)
    STRUCT_FN = re.compile(r"(?<!cdktf\.)\b(\w+)ToTerraform\b")

    def __init__(self, package_lib: Path, kebab: str) -> None:
        js = (package_lib / kebab / "index.js").read_text()
        dts = (package_lib / kebab / "index.d.ts").read_text()
        self.functions: dict[str, dict[str, str | None]] = {}
        self.camel: dict[str, dict[str, str]] = {}
        for m in self.FN.finditer(js):
            name, body = m.group(1), m.group(2)
            ret = body[body.find("return {"):]
            self.functions[name], self.camel[name] = self.entries(ret)
        synth = js[js.index("synthesizeAttributes() {"):]
        synth = synth[:synth.index("\n    }\n")]
        self.root = "__root__"
        self.functions[self.root], self.camel[self.root] = self.entries(synth)
        self.required: dict[str, set[str]] = {}
        for fn in self.functions:
            iface = (fn[0].upper() + fn[1:]) if fn != self.root else None
            if iface is None:
                m = re.search(r"export interface (\w+Config) extends cdktf\.TerraformMetaArguments \{(.*?)^\}", dts, re.S | re.M)
            else:
                m = re.search(rf"export interface {iface} \{{(.*?)^\}}", dts, re.S | re.M)
            body = m.group(m.lastindex) if m else ""
            required_camel = set(re.findall(r"^\s+readonly (\w+): ", body, re.M))
            self.required[fn] = {snake for snake, camel in self.camel[fn].items() if camel in required_camel}

    def entries(self, text: str) -> tuple[dict[str, str | None], dict[str, str]]:
        entries: dict[str, str | None] = {}
        camel: dict[str, str] = {}
        for m in self.ENTRY.finditer(text):
            key, value = m.group(1), m.group(2)
            if key in ("return",):
                continue
            structs = [s for s in self.STRUCT_FN.findall(value) if not s.startswith("cdktf")]
            entries[key] = structs[0] if structs else None
            c = re.search(r"(?:struct\.|this\._)(\w+)", value)
            if c:
                camel[key] = c.group(1)
        return entries, camel


def load_schema(rtype: str) -> Schema | None:
    provider, _, rest = rtype.partition("_")
    package = {"google": "provider-google", "random": "provider-random"}.get(provider)
    if package is None:
        return None
    lib = SCHEMA_DIR / package / "package" / "lib"
    kebab = rest.replace("_", "-")
    if not (lib / kebab / "index.js").exists():
        return None
    return Schema(lib, kebab)


def validate_body(schema: Schema, fn: str, body: dict, path: str, problems: list[str]) -> None:
    allowed = schema.functions.get(fn, {})
    present = set()
    for key, value in body.items():
        if key in META_KEYS:
            continue
        present.add(key)
        if key not in allowed:
            problems.append(f"{path}: no attribute or block `{key}` in the provider schema")
            continue
        child = allowed[key]
        if child is not None:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    validate_body(schema, child, item, f"{path}.{key}", problems)
    for entry in body.get("dynamic", []):
        for key, dyn in entry.items():
            present.add(key)
            child = allowed.get(key)
            if key not in allowed or child is None:
                problems.append(f"{path}: dynamic `{key}` is not a block of the provider schema")
                continue
            for content in dyn.get("content", []):
                validate_body(schema, child, content, f"{path}.{key}[dynamic]", problems)
    for key in sorted(schema.required.get(fn, set()) - present):
        problems.append(f"{path}: required `{key}` is not set")


# --- checks -------------------------------------------------------------------------------------

def cargo_bins() -> dict[str, str]:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    meta = json.loads(out)
    return {t["name"]: p["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]}


def readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Configuration"):]
    section = section[:section.index("\n## ", 3)]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first))
    return names


def check_schema(tf: Terraform, report: Report) -> None:
    problems = []
    for (rtype, rname), body in sorted(tf.resources.items()):
        schema = load_schema(rtype)
        if schema is None:
            problems.append(f"{rtype}: no schema found under {SCHEMA_DIR}")
            continue
        validate_body(schema, schema.root, body, f"{rtype}.{rname}", problems)
    report.check(f"provider schema: {len(tf.resources)} resources, every block and attribute known, required ones set", problems)


def check_references(tf: Terraform, report: Report) -> None:
    problems = []
    declared_types = {t for t, _ in tf.resources}
    for fname, doc in tf.files.items():
        for s in strings(doc):
            for kind, name in re.findall(r"\b(var|local)\.([A-Za-z_][\w-]*)", s):
                if kind == "var" and name not in tf.variables:
                    problems.append(f"{fname}: var.{name} is not declared")
                if kind == "local" and name not in tf.locals:
                    problems.append(f"{fname}: local.{name} is not declared")
            for rtype, rname in re.findall(r"\b((?:google|random)_[a-z0-9_]+)\.([a-z0-9_]+)\b", s):
                if rtype in declared_types and (rtype, rname) not in tf.resources:
                    problems.append(f"{fname}: {rtype}.{rname} is not declared")
                elif rtype not in declared_types and f"{rtype}." in s and not s.startswith("roles/"):
                    problems.append(f"{fname}: resource type {rtype} is referenced but not declared")
    report.check("references: every var., local. and resource reference is declared", sorted(set(problems)))


def check_images_and_workloads(tf: Terraform, bins: dict[str, str], docker_targets: set[str], report: Report) -> None:
    problems = []
    for b in sorted(bins):
        if b in NOT_DEPLOYED:
            continue
        if b not in docker_targets:
            problems.append(f"binary {b} has no Dockerfile target")
    services = tf.resource("google_cloud_run_v2_service", "service")
    images = tf.locals.get("service_images", {})
    if set(images) != CLOUD_RUN_SERVICES:
        problems.append(f"local.service_images names {sorted(images)}, not the four services")
    for name, ref in images.items():
        if expr(ref) != f"var.image_{name}" or f"image_{name}" not in tf.variables:
            problems.append(f"service {name}: image is {ref}, not the variable image_{name}")
    container = blocks(blocks(services, "template")[0], "containers")[0] if services else {}
    if expr(attr(container, "image", "")) != "local.service_images[each.key]":
        problems.append("google_cloud_run_v2_service.service: image is not local.service_images[each.key]")
    default_services = set(unwrap(tf.variables.get("services", {}).get("default", [{}])) or {})
    if default_services != CLOUD_RUN_SERVICES:
        problems.append(f"var.services defaults to {sorted(default_services)}")
    deployed_service_bins = {b for b in bins if b not in NOT_DEPLOYED and b not in SELF_HOST_ONLY and b != "jobs"}
    if deployed_service_bins != CLOUD_RUN_SERVICES:
        problems.append(f"service binaries {sorted(deployed_service_bins)} differ from the Cloud Run services")
    # Jobs: the jobs binary, each subcommand a real one, every one but migrate scheduled.
    job = tf.resource("google_cloud_run_v2_job", "job")
    job_container = blocks(blocks(blocks(job, "template")[0], "template")[0], "containers")[0] if job else {}
    if expr(attr(job_container, "image", "")) != "var.image_jobs":
        problems.append("google_cloud_run_v2_job.job: image is not var.image_jobs")
    names = set(re.findall(r'=> "([a-z-]+)"', (ROOT / "jobs/src/lib.rs").read_text()))
    jobs = tf.locals.get("jobs", {})
    for key, spec in jobs.items():
        args = spec.get("args", [])
        if not args or args[0] not in names:
            problems.append(f"job {key}: args {args} is not a jobs subcommand ({sorted(names)})")
        scheduled = spec.get("schedule") is not None
        if key != "migrate" and not scheduled:
            problems.append(f"job {key} has no schedule")
        if key == "migrate" and scheduled:
            problems.append("migrate is scheduled: it runs at deployment, before the services")
    if "run-all" not in jobs:
        problems.append("no run-all job: the maintenance jobs would never run")
    scheduler = tf.resource("google_cloud_scheduler_job", "job")
    target = blocks(scheduler, "http_target")[0] if scheduler else {}
    uri = attr(target, "uri", "")
    if not uri.startswith("https://run.googleapis.com/v2/projects/") or not uri.endswith(":run}") and not uri.endswith(":run"):
        problems.append(f"scheduler uri {uri!r} is not the Run Admin API jobs.run")
    if not blocks(target, "oauth_token"):
        problems.append("scheduler has no oauth_token (the Run Admin API wants an OAuth access token)")
    if "local.jobs" not in expr(attr(scheduler, "for_each", "")) or "schedule != None" not in expr(attr(scheduler, "for_each", "")):
        problems.append("scheduler jobs are not every scheduled entry of local.jobs")
    report.check("images: every binary has a Dockerfile target; services, jobs and schedules from image variables", problems)


def env_names(tf: Terraform) -> tuple[set[str], set[str]]:
    """Names of the variables set on services and on jobs."""
    common = set(tf.locals.get("common_env", {}))
    service = common | set(tf.locals.get("service_env_base", {})) | set(tf.locals.get("secret_env_vars", {}))
    service |= set(tf.locals.get("secret_file_vars", {}).values())
    job = common | set(tf.locals.get("job_env_base", {}))
    for rtype, target in (("google_cloud_run_v2_service", service), ("google_cloud_run_v2_job", job)):
        for body in (b for (t, _), b in tf.resources.items() if t == rtype):
            for s in json.dumps(body).split('"env": [')[1:]:
                target.update(re.findall(r'"name": \["([A-Z][A-Z0-9_]*)"\]', s[:400]))
    return service, job


def check_env(tf: Terraform, report: Report) -> None:
    problems = []
    documented = readme_variables()
    service, job = env_names(tf)
    for name in sorted((service | job) - documented):
        problems.append(f"{name} is set by Terraform but not in the README configuration table")
    for name in sorted((service | job) & RESERVED_ENV):
        problems.append(f"{name} is Cloud Run's own variable")
    for name, why in REQUIRED_SERVICE_ENV.items():
        if name not in service:
            problems.append(f"services: {name} is not set ({why})")
    for name in sorted(REQUIRED_JOB_ENV - job):
        problems.append(f"jobs: {name} is not set")
    for mode, names in AUTH_MODE_ENV.items():
        for name in sorted(names - service):
            problems.append(f"AUTH_MODE={mode}: {name} can never be set")
    base = tf.locals.get("service_env_base", {})
    if base.get("DB_MIGRATE_ON_START") != "false" or base.get("HOST") != "0.0.0.0":
        problems.append("services: DB_MIGRATE_ON_START must be false and HOST 0.0.0.0")
    if tf.locals.get("common_env", {}).get("STORAGE_BACKEND") != "gcs":
        problems.append("STORAGE_BACKEND is not gcs")
    # The dynamic env blocks take exactly these maps.
    services = json.dumps(tf.resource("google_cloud_run_v2_service", "service"))
    for local in ("local.service_env", "local.env_secrets", "local.file_secrets"):
        if local not in services:
            problems.append(f"the services do not use {local}")
    if "local.job_env" not in json.dumps(tf.resource("google_cloud_run_v2_job", "job")):
        problems.append("the jobs do not use local.job_env")
    report.check(f"environment: {len(service)} service and {len(job)} job variables, all documented, the required ones set", problems)


# The few expression forms the URL map's dynamic blocks may use, rendered against routes.json.
def render(expression: str, scope: dict, backends: str):
    e = expr(expression).replace(" ", "")
    m = re.fullmatch(r"lookup\((\w+)\.value,\"(\w+)\",(None|\[\])\)", e)
    if m:
        return scope[m.group(1)].get(m.group(2), None if m.group(3) == "None" else [])
    m = re.fullmatch(r"(\w+)\.value\.(\w+)", e)
    if m:
        return scope[m.group(1)][m.group(2)]
    m = re.fullmatch(re.escape(backends) + r"\[(\w+)\.value\.service\]\.id", e)
    if m:
        return {"backend": scope[m.group(1)]["service"]}
    m = re.fullmatch(r"(\w+)\.value", e)
    if m:
        return scope[m.group(1)]
    raise ValueError(f"expression the check cannot render: {expression}")


def render_dynamic(body: dict, scope: dict, backends: str) -> dict:
    out = {}
    for key, value in body.items():
        if key in META_KEYS:
            continue
        out[key] = render(value[0] if isinstance(value, list) else value, scope, backends)
    for entry in body.get("dynamic", []):
        for key, dyn in entry.items():
            items = render(dyn["for_each"][0], scope, backends)
            out[key] = [render_dynamic(dyn["content"][0], {**scope, key: item}, backends) for item in items]
    return {k: v for k, v in out.items() if v is not None and v != []}


def check_url_map(tf: Terraform, report: Report) -> None:
    problems = []
    table = json.loads((TF_DIR / "routes.json").read_text())
    backends = "google_compute_backend_service.service"
    routes_local = expr(tf.locals.get("routes", ""))
    if routes_local.replace(" ", "") != 'jsondecode(file("${path.module}/routes.json"))':
        problems.append(f"local.routes is {routes_local}, not the decoded routes.json")
    url_map = tf.resource("google_compute_url_map", "https")
    default = f"{backends}[local.routes.default_service].id"
    if expr(attr(url_map, "default_service", "")) != default:
        problems.append("the URL map's default service is not routes.json's default_service")
    matchers = blocks(url_map, "path_matcher")
    if len(matchers) != 1:
        problems.append(f"{len(matchers)} path matchers, expected 1")
    else:
        matcher = matchers[0]
        if expr(attr(matcher, "default_service", "")) != default:
            problems.append("the path matcher's default service is not routes.json's default_service")
        if set(matcher) - META_KEYS - {"name", "default_service"}:
            problems.append(f"the path matcher has more than the route table: {sorted(set(matcher) - META_KEYS)}")
        dyn = dynamic_blocks(matcher, "route_rules")
        if len(dyn) != 1 or expr(dyn[0]["for_each"][0]) != "local.routes.route_rules":
            problems.append("route_rules are not one dynamic block over local.routes.route_rules")
        else:
            try:
                rendered = [render_dynamic(dyn[0]["content"][0], {"route_rules": r}, backends) for r in table["route_rules"]]
            except (ValueError, KeyError) as e:
                rendered = None
                problems.append(str(e))
            if rendered is not None:
                # `description` documents a rule for people; the provider's route_rules has none.
                expected = [
                    {**{k: v for k, v in r.items() if k not in ("service", "description")}, "service": {"backend": r["service"]}}
                    for r in table["route_rules"]
                ]
                if rendered != expected:
                    problems.append("rendered route rules differ from routes.json:\n"
                                    + json.dumps(rendered, indent=1)[:2000])
    backend = tf.resource("google_compute_backend_service", "service")
    if expr(attr(backend, "for_each", "")) != "toset(local.routes.services)":
        problems.append("backend services are not one per routes.json service")
    if set(table["services"]) != CLOUD_RUN_SERVICES:
        problems.append(f"routes.json services {table['services']} are not the Cloud Run services")
    neg = tf.resource("google_compute_region_network_endpoint_group", "service")
    if attr(neg, "network_endpoint_type") != "SERVERLESS":
        problems.append("the NEGs are not serverless")
    report.check(f"URL map: {len(table['route_rules'])} route rules rendered from routes.json, identical", problems)


def check_iam(tf: Terraform, report: Report) -> None:
    problems = []
    access = tf.locals.get("access", {})
    granted: dict[str, set[tuple[str, str]]] = {k: set() for k in access}
    granted["scheduler"] = set()
    known = {
        ("google_storage_bucket_iam_member", "bucket"),
        ("google_service_account_iam_member", "sign_urls"),
        ("google_project_iam_member", "cloudsql_client"),
        ("google_secret_manager_secret_iam_member", "access"),
        ("google_cloud_run_v2_job_iam_member", "scheduler"),
    }
    for (rtype, rname), body in tf.resources.items():
        if rtype.endswith("_iam_binding") or rtype.endswith("_iam_policy"):
            problems.append(f"{rtype}.{rname}: authoritative IAM would remove others' grants")
        if rtype.endswith("_iam_member") and (rtype, rname) not in known:
            problems.append(f"{rtype}.{rname}: a grant the check does not know (add it to EXPECTED_ROLES and docs/deploy.md)")
    if tf.resource("google_storage_bucket_iam_member", "bucket"):
        for account, a in access.items():
            if a.get("bucket"):
                granted[account].add(("bucket", a["bucket"]))
        if attr(tf.resource("google_storage_bucket_iam_member", "bucket"), "role") != "${each.value}":
            problems.append("bucket role is not taken from local.access")
    sign = tf.resource("google_service_account_iam_member", "sign_urls")
    if sign:
        role = attr(sign, "role")
        if expr(attr(sign, "service_account_id", "")) != "google_service_account.runtime[each.key].name" or \
                expr(attr(sign, "member", "")).replace("serviceAccount:", "") != "${google_service_account.runtime[each.key].email}".strip("${}"):
            pass
        if "google_service_account.runtime[each.key].name" not in attr(sign, "service_account_id", "") or \
                "google_service_account.runtime[each.key].email" not in attr(sign, "member", ""):
            problems.append("sign_urls is not granted on the account itself")
        for account, a in access.items():
            if a.get("sign_urls"):
                granted[account].add(("itself", role))
    sql = tf.resource("google_project_iam_member", "cloudsql_client")
    if sql:
        condition = attr(blocks(sql, "condition")[0], "expression", "") if blocks(sql, "condition") else ""
        if "resource.name ==" not in condition:
            problems.append("cloudsql.client is not limited to the instance by a condition")
        for account in access:
            granted[account].add(("instance", attr(sql, "role")))
    secrets = tf.resource("google_secret_manager_secret_iam_member", "access")
    if secrets:
        for account, a in access.items():
            granted[account].add((f"secrets:{a.get('secrets')}", attr(secrets, "role")))
    invoker = tf.resource("google_cloud_run_v2_job_iam_member", "scheduler")
    if invoker:
        if "google_service_account.scheduler.email" not in attr(invoker, "member", ""):
            problems.append("run.invoker on the jobs goes to someone else than the scheduler account")
        granted["scheduler"].add(("scheduled jobs", attr(invoker, "role")))
    for account in sorted(set(granted) | set(EXPECTED_ROLES)):
        got, want = granted.get(account, set()), EXPECTED_ROLES.get(account, set())
        for extra in sorted(got - want):
            problems.append(f"{account}: {extra[1]} on {extra[0]} is not in the table")
        for missing in sorted(want - got):
            problems.append(f"{account}: {missing[1]} on {missing[0]} is missing")
    project_roles = [b for (t, _), b in tf.resources.items() if t == "google_project_iam_member"]
    if len(project_roles) != 1:
        problems.append(f"{len(project_roles)} project-level grants; only cloudsql.client (conditioned) is meant")
    # The table in docs/deploy.md says the same.
    doc = (ROOT / "docs/deploy.md").read_text()
    for account, roles in EXPECTED_ROLES.items():
        row = next((l for l in doc.splitlines() if l.startswith(f"| `{account}` ")), "")
        for _, role in roles:
            if role not in row:
                problems.append(f"docs/deploy.md: the row of {account} does not list {role}")
    report.check(f"IAM: {len(EXPECTED_ROLES)} service accounts with exactly the roles of the table", problems)


def dockerfile_stages(text: str) -> dict[str, list[str]]:
    text = re.sub(r"\\\n", " ", text)
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", s, re.I)
        if m:
            current = m.group(1) or f"stage{len(stages)}"
            stages[current] = [s]
        elif current:
            stages[current].append(s)
    return stages


def builder_command(text: str) -> str:
    cmds = {re.sub(r"\s+", " ", c).strip() for c in re.findall(r"cargo build[^&\n]*", "\n".join(dockerfile_stages(text)["builder"]))}
    if len(cmds) != 1:
        raise ValueError(f"the builder stage runs {len(cmds)} different cargo builds: {sorted(cmds)}")
    return cmds.pop()


def check_dockerfile(bins: dict[str, str], report: Report) -> set[str]:
    problems = []
    text = (ROOT / "Dockerfile").read_text()
    stages = dockerfile_stages(text)
    targets = set()
    for b in sorted(bins):
        if b in NOT_DEPLOYED:
            continue
        lines = stages.get(b)
        if lines is None:
            problems.append(f"no target {b}")
            continue
        targets.add(b)
        joined = "\n".join(lines)
        if f"/out/{b} " not in joined + " " and f"/out/{b}\n" not in joined:
            problems.append(f"target {b} does not copy /out/{b}")
        if f'ENTRYPOINT ["/usr/local/bin/{b}"]' not in joined:
            problems.append(f"target {b} does not run /usr/local/bin/{b}")
        chain, user = b, None
        while chain in stages and user is None:
            user = next((l.split()[1] for l in reversed(stages[chain]) if l.upper().startswith("USER ")), None)
            parent = stages[chain][0].split()[1]
            chain = parent if parent in stages else ""
        if not user or user.split(":")[0] in ("root", "0"):
            problems.append(f"target {b} does not run as a non-root user")
    try:
        docker_cmd = builder_command(text)
        test_sh = (ROOT / "scripts/test.sh").read_text()
        test_cmds = {c.strip() for c in re.findall(r"^\s*(cargo build [^\n]*)$", test_sh, re.M)}
        expected = {f"{c} --release --locked".replace("cargo build", "cargo build") for c in test_cmds}
        normalise = lambda c: sorted(c.split())  # noqa: E731
        if not any(normalise(docker_cmd) == normalise(e) for e in expected):
            problems.append(f"the builder runs `{docker_cmd}`, not the test command's build ({sorted(test_cmds)}) with --release --locked")
        copied = set(re.findall(r"target/release/(\w+)", "\n".join(stages["builder"])))
        for b in targets:
            if b not in copied:
                problems.append(f"the builder does not copy target/release/{b} to /out")
    except (KeyError, ValueError) as e:
        problems.append(str(e))
    report.check(f"Dockerfile: a non-root target per binary ({', '.join(sorted(targets))}); builder = test build + --release --locked", problems)
    return targets


def check_cloudbuild(targets: set[str], report: Report) -> None:
    problems = []
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    steps = {s["id"]: s for s in build["steps"]}
    text = json.dumps(build)
    for needed, what in (("cargo fmt --all --check", "fmt"), ("cargo clippy", "clippy"), ("./scripts/test.sh", "tests")):
        if needed not in text:
            problems.append(f"no {what} step")
    for t in sorted(targets):
        step = steps.get(f"build-{t}")
        if step is None or f"--target={t}" not in step.get("args", []):
            problems.append(f"no build-{t} step with --target={t}")
        elif step.get("waitFor") != ["builder"]:
            problems.append(f"build-{t} does not start right after the builder (parallel)")
    push = steps.get("push", {})
    pushed = re.search(r"for target in ([a-z ]+); do", "\n".join(push.get("args", [])))
    if not pushed or set(pushed.group(1).split()) != targets:
        problems.append("the push step does not push every target")
    if "test" not in steps.get("builder", {}).get("waitFor", []):
        problems.append("images are built before the tests pass")
    order = [s["id"] for s in build["steps"]]
    if not (order.index("deploy-migrate-job") < order.index("migrate") < order.index("deploy")):
        problems.append("migrations do not run before the services are deployed")
    if "migrate" not in steps.get("deploy", {}).get("waitFor", []):
        problems.append("deploy does not wait for migrate")
    for sub in re.findall(r"\$(_[A-Z_]+)", text):
        if sub not in build.get("substitutions", {}):
            problems.append(f"substitution {sub} has no default")
    report.check("cloudbuild.yaml: fmt, clippy, tests, then every target in parallel, push, migrate, deploy", sorted(set(problems)))


def main() -> int:
    report = Report()
    tf = Terraform(TF_DIR)
    report.check(f"terraform: {len(tf.files)} files parse (python-hcl2)", tf.parse_errors)
    if tf.parse_errors:
        print(f"deploy: {report.passed} passed, {report.failed} failed")
        return 1
    bins = cargo_bins()
    targets = check_dockerfile(bins, report)
    check_schema(tf, report)
    check_references(tf, report)
    check_images_and_workloads(tf, bins, targets, report)
    check_env(tf, report)
    check_url_map(tf, report)
    check_iam(tf, report)
    check_cloudbuild(targets, report)
    print(f"deploy: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
