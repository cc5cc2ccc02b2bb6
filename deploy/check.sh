#!/usr/bin/env bash
# deploy/check.sh: checks the deployment files against the programs of a build.
#
#   deploy/check.sh [--build-dir DIR]     (default: $NR_BUILD_DIR, else build/)
#
# What it checks (each line of output is PASS, FAIL or SKIP with a reason):
#  1. systemd units (deploy/systemd): `systemd-analyze verify` on copies whose
#     ExecStart points at the built programs (any complaint fails); when
#     systemd-analyze is missing, a parse check instead (said so). Then the
#     house rules: User=narrator, NoNewPrivileges, ProtectSystem=strict,
#     PrivateTmp, Restart=on-failure, an existing --config file, every flag
#     known to the program, Redis's files owner-only (UMask=0077,
#     StateDirectoryMode=0700); narrator.sysusers applied to an empty root
#     (systemd-sysusers --root) creates the narrator account.
#  2. YAML: compose.yaml and deploy/k8s/*.yaml parse (python3-yaml).
#  3. deploy/config/*.conf: each file is run through its program
#     (`<program> --config FILE --help`, which validates every key and value
#     and exits 2 on a bad one; narrate: `narrate --config FILE help`), and a
#     copy with an unknown key must be refused (the check really checks).
#     Each file must also list every setting its program's --help shows
#     (set, or commented out as "# key = ...").
#     redis.conf: it sets requirepass; redis-server starts with it (port,
#     folder and the password placeholder replaced), reports appendonly yes,
#     maxmemory-policy noeviction, and answers PING without the password
#     with NOAUTH.
#  4. compose.yaml: every narrator command is a built program, every flag is
#     in its --help, NARRATOR_* variables are ones it reads, --config files
#     exist in deploy/config (the image copies them to /etc/narrator), vision
#     and text reserve an nvidia GPU, redis runs with AOF and noeviction,
#     and a password (requirepass on its standard input, not its command
#     line, umask 077), which redis and the broker read from
#     deploy/redis-password.env, a file git ignores.
#  5. Kubernetes: `kubectl kustomize deploy/k8s` renders (when kubectl is
#     installed; otherwise the files listed in kustomization.yaml are read),
#     then required fields (apiVersion, kind, metadata.name), known field
#     names in workload, pod and container specs (typos), selectors that
#     match their pod labels, containers with image and cpu/memory requests
#     and limits, no privilege escalation, commands and flags as in 4,
#     ConfigMap and PVC references that exist, Service selectors and target
#     ports that match a workload, GPU requests and a nodeSelector for vision
#     and text, Redis with a volume claim, AOF, noeviction and a password as
#     in 4, Redis and the broker reading it from the Secret narrator-redis
#     (not optional), and each .conf in the ConfigMap validated by its
#     program as in 3.
#  6. Dockerfile: FROM debian:12, every COPY source exists.
#  7. A smoke run of the example settings with real processes: redis-server
#     (redis.conf), the broker (broker.conf; both with one random password
#     in place of the placeholder), one worker per stage (their
#     .conf, with the tiny test checkpoint on the CPU), the gateway
#     (gateway.conf, /healthz), and `narrate --config narrate.conf submit`
#     of one image through the whole route; /metrics must show it done.
#     Ports, folders, model and device are overridden by flags.
# Exit status: 0 when nothing failed, 1 otherwise.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${NR_BUILD_DIR:-$root/build}"
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "check.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ -d "$build_dir" ] && build_dir="$(cd "$build_dir" && pwd)"
[ -x /usr/bin/python3 ] || { echo "check.sh: /usr/bin/python3 is needed" >&2; exit 2; }
/usr/bin/python3 -c 'import yaml' 2>/dev/null ||
  { echo "check.sh: python3-yaml is needed (apt-get install python3-yaml)" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ---- 1a. systemd-analyze verify (shell side; the rules are in python) ----
units_report="$tmp/units.txt"
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$tmp/units"
  for f in "$root"/deploy/systemd/*.service "$root"/deploy/systemd/*.target; do
    name="$(basename "$f")"
    # A template is verified as one instance of it.
    case "$name" in *@.service) name="${name%@.service}@0.service" ;; esac
    sed "s#/usr/local/bin/#$build_dir/bin/#g" "$f" >"$tmp/units/$name"
  done
  if (cd "$tmp/units" && systemd-analyze verify ./*.service ./*.target) >"$units_report" 2>&1; then :; fi
  echo "verify" >"$tmp/units.mode"
else
  echo "parse" >"$tmp/units.mode"
fi

export NR_CHECK_ROOT="$root" NR_CHECK_BIN="$build_dir/bin" NR_CHECK_TMP="$tmp"
exec /usr/bin/python3 - <<'PYEOF'
import configparser, glob, os, re, shutil, socket, subprocess, sys, time
import yaml

root = os.environ["NR_CHECK_ROOT"]
bindir = os.environ["NR_CHECK_BIN"]
tmp = os.environ["NR_CHECK_TMP"]
counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

def report(status, what, why=""):
    counts[status] += 1
    print(f"{status} {what}" + (f": {why}" if why else ""))

def rel(p):
    return os.path.relpath(p, root)

# ---- programs and their settings (from --help) ----
PROGRAMS = ["narrator-broker", "narrator-worker-vision", "narrator-worker-text",
            "narrator-worker-speech", "narrator-gateway", "narrate"]
_help = {}

def program_path(prog):
    p = os.path.join(bindir, prog)
    return p if os.access(p, os.X_OK) else None

def program_help(prog):
    """(flags, envs) the program documents in --help, or None if not built."""
    if prog in _help:
        return _help[prog]
    path = program_path(prog)
    if not path:
        _help[prog] = None
        return None
    out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30).stdout
    flags = set(re.findall(r"(?m)^\s+(--[a-z0-9][a-z0-9-]*)", out))
    flags |= set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", out)) if prog == "narrate" else set()
    envs = set(re.findall(r"\benv (NARRATOR_[A-Z0-9_]+)", out))
    _help[prog] = (flags, envs)
    return _help[prog]

def check_config_text(prog, text, what):
    """Runs the settings text through the program; also checks a copy with
    an unknown key is refused. Returns True when checked and fine."""
    path = program_path(prog)
    if not path:
        report("SKIP", what, f"{prog} is not built in {bindir}")
        return False
    f = os.path.join(tmp, "cfg-" + re.sub(r"[^a-z0-9.-]", "_", what) + ".conf")
    with open(f, "w") as fh:
        fh.write(text)
    argv = [path, "--config", f] + (["help"] if prog == "narrate" else ["--help"])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        report("FAIL", what, f"{prog} refuses it: {r.stderr.strip()}")
        return False
    bad = f + ".bad"
    with open(bad, "w") as fh:
        fh.write(text + "\nno-such-setting-xyz = 1\n")
    argv[2] = bad
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode == 0:
        report("FAIL", what, f"{prog} --config accepts an unknown key, so this check proves nothing")
        return False
    report("PASS", what, f"every key accepted by {prog}")
    return True

def check_command(argv, what, config_dir_ok):
    """A container/unit command: program built, flags known, --config exists."""
    if not argv:
        report("FAIL", what, "no command")
        return
    prog = os.path.basename(argv[0])
    shell = False
    # Redis started by a shell that hands it its password (compose, k8s):
    # sh -c SCRIPT NAME ARGS..., where SCRIPT runs redis-server "$@".
    if prog in ("sh", "bash") and len(argv) > 2 and argv[1] == "-c" and re.search(
            r"(?m)^\s*exec redis-server\b", argv[2]):
        prog, shell = "redis-server", True
    if prog == "redis-server":
        args = " ".join(argv)
        ok = re.search(r"appendonly\"?\s+\"?yes", args) and "noeviction" in args
        if "--appendonly" in argv or "/etc/narrator/redis.conf" in argv:
            if "/etc/narrator/redis.conf" in argv:
                ok = True  # the file itself is checked in section 3
        report("PASS" if ok else "FAIL", what, "redis with AOF and noeviction" if ok
               else "redis must run with appendonly yes and maxmemory-policy noeviction")
        # A password, and never on the command line (ps shows it): from
        # redis.conf (section 3 checks it is set), or a config on stdin.
        if "/etc/narrator/redis.conf" in argv:
            ok, why = True, "requirepass from /etc/narrator/redis.conf"
        elif "requirepass" in " ".join(argv[3:] if shell else argv[1:]):
            ok, why = False, "requirepass on the command line, where ps shows it"
        elif shell and re.search(
                r"exec redis-server - .*<<\s*(\w+)\n\s*requirepass \S+\n", argv[2], re.S) \
                and "umask 077" in argv[2]:
            ok, why = True, "requirepass on stdin, umask 077 (data files 0600)"
        else:
            ok, why = False, "redis needs requirepass (not on its command line) and umask 077"
        report("PASS" if ok else "FAIL", what + " password", why)
        return
    if prog not in PROGRAMS:
        report("FAIL", what, f"'{prog}' is not a narrator program ({', '.join(PROGRAMS)})")
        return
    h = program_help(prog)
    if h is None:
        report("SKIP", what, f"{prog} is not built in {bindir}")
        return
    flags, _ = h
    unknown = [a.split("=")[0] for a in argv[1:] if a.startswith("--")
               and a.split("=")[0] not in flags]
    if unknown:
        report("FAIL", what, f"{prog} has no flag {', '.join(unknown)}")
        return
    if "--config" in argv:
        i = argv.index("--config")
        cfg = argv[i + 1] if i + 1 < len(argv) else ""
        name = os.path.basename(cfg)
        if not cfg.startswith("/etc/narrator/") or name not in config_dir_ok:
            report("FAIL", what, f"--config {cfg} is not one of /etc/narrator/{{{','.join(sorted(config_dir_ok))}}}")
            return
    report("PASS", what, f"{prog}, flags known")

def check_env(prog, names, what):
    h = program_help(prog) if prog in PROGRAMS else None
    if h is None:
        return
    _, envs = h
    bad = [n for n in names if n.startswith("NARRATOR_") and n not in envs]
    report("FAIL" if bad else "PASS", what + " environment",
           f"{prog} reads no {', '.join(bad)}" if bad else f"{len(names)} variable(s) known to {prog}")

CONFIG_PROGRAM = {"broker.conf": "narrator-broker", "worker-vision.conf": "narrator-worker-vision",
                  "worker-text.conf": "narrator-worker-text", "worker-speech.conf": "narrator-worker-speech",
                  "gateway.conf": "narrator-gateway", "narrate.conf": "narrate"}
config_files = {os.path.basename(p) for p in glob.glob(os.path.join(root, "deploy/config/*.conf"))}

# ---- 1. systemd units ----
print("== systemd units (deploy/systemd)")
mode = open(os.path.join(tmp, "units.mode")).read().strip()
unit_files = sorted(glob.glob(os.path.join(root, "deploy/systemd/*.service")) +
                    glob.glob(os.path.join(root, "deploy/systemd/*.target")))
if mode == "verify":
    out = open(os.path.join(tmp, "units.txt")).read().strip()
    report("FAIL" if out else "PASS", "systemd-analyze verify (%d units)" % len(unit_files),
           out.replace("\n", " | ") if out else "no complaints")
else:
    report("SKIP", "systemd-analyze verify", "systemd-analyze is not installed; parse check only")
SECTIONS = {"Unit", "Service", "Install"}
for f in unit_files:
    what = rel(f)
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",),
                                   comment_prefixes=("#", ";"), empty_lines_in_values=False)
    cp.optionxform = str
    try:
        cp.read(f)
    except configparser.Error as e:
        report("FAIL", what, f"does not parse: {e}")
        continue
    extra = set(cp.sections()) - SECTIONS
    if extra:
        report("FAIL", what, f"unknown sections {extra}")
        continue
    if f.endswith(".target"):
        report("PASS", what, "parses")
        continue
    s = cp["Service"] if cp.has_section("Service") else {}
    want = {"User": "narrator", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
            "PrivateTmp": "yes", "Restart": "on-failure", "ProtectHome": "yes"}
    wrong = [f"{k}={s.get(k)} (want {v})" for k, v in want.items() if s.get(k) != v]
    if not cp.has_section("Install") or "WantedBy" not in cp["Install"]:
        wrong.append("no [Install] WantedBy")
    if wrong:
        report("FAIL", what, "; ".join(wrong))
        continue
    report("PASS", what + " hardening", "User=narrator, NoNewPrivileges, ProtectSystem=strict, PrivateTmp, Restart=on-failure")
    if os.path.basename(f) == "narrator-redis.service":
        ok = s.get("UMask") == "0077" and s.get("StateDirectoryMode") == "0700"
        report("PASS" if ok else "FAIL", what + " data files", "UMask=0077, StateDirectoryMode=0700: AOF and RDB 0600"
               if ok else "Redis's files need UMask=0077 and StateDirectoryMode=0700 (owner only)")
    argv = s.get("ExecStart", "").split()
    check_command(argv, what + " ExecStart", config_files | {"redis.conf"})

sysusers = os.path.join(root, "deploy/systemd/narrator.sysusers")
if not shutil.which("systemd-sysusers"):
    report("SKIP", rel(sysusers), "systemd-sysusers is not installed")
else:
    r_root = os.path.join(tmp, "sysroot")
    os.makedirs(os.path.join(r_root, "etc"))
    r = subprocess.run(["systemd-sysusers", "--root=" + r_root, sysusers],
                       capture_output=True, text=True, timeout=30)
    pw = os.path.join(r_root, "etc/passwd")
    ok = r.returncode == 0 and os.path.exists(pw) and re.search(
        r"(?m)^narrator:x:\d+:\d+:[^:]*:[^:]*:/usr/sbin/nologin$", open(pw).read())
    report("PASS" if ok else "FAIL", rel(sysusers), "creates the narrator account (no login shell)"
           if ok else (r.stderr.strip() or "no narrator account created"))

# ---- 2. YAML ----
print("== YAML")
yaml_files = [os.path.join(root, "deploy/compose.yaml")] + sorted(glob.glob(os.path.join(root, "deploy/k8s/*.yaml")))
docs = {}
for f in yaml_files:
    try:
        with open(f) as fh:
            docs[f] = [d for d in yaml.safe_load_all(fh) if d is not None]
        report("PASS", rel(f), f"{len(docs[f])} document(s)")
    except (OSError, yaml.YAMLError) as e:
        report("FAIL", rel(f), f"not valid YAML: {e}")

# The example files carry a placeholder password (redis.conf requirepass,
# broker.conf redis-password); the runs below put one random password in
# copies of both, as deploy/README.md tells the operator to.
redis_password = os.urandom(32).hex()
redis_env = dict(os.environ, REDISCLI_AUTH=redis_password)
def set_redis_password(text):
    return re.sub(r"(?m)^(\s*requirepass)\s+\S+.*$", r"\1 " + redis_password, text)
def set_broker_password(text):
    return re.sub(r"(?m)^(\s*redis-password\s*=).*$", r"\1 " + redis_password, text)

# ---- 3. config files ----
print("== settings files (deploy/config)")
for name in sorted(config_files):
    f = os.path.join(root, "deploy/config", name)
    if name == "redis.conf":
        continue
    prog = CONFIG_PROGRAM.get(name)
    if not prog:
        report("FAIL", rel(f), "no program reads it (expected one of %s)" % ", ".join(CONFIG_PROGRAM))
        continue
    check_config_text(prog, open(f).read(), rel(f))
# Each example file lists every setting of its program (set, or commented
# out as "# key = ..."), so a new setting cannot go undocumented here.
for name, prog in CONFIG_PROGRAM.items():
    f = os.path.join(root, "deploy/config", name)
    path = program_path(prog)
    if not os.path.exists(f) or not path:
        continue
    out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30).stdout
    if prog == "narrate":
        out = out.split("Global options", 1)[-1]
    keys = set(re.findall(r"(?m)^\s+--([a-z0-9][a-z0-9-]*)", out)) - {"config", "help"}
    text = open(f).read()
    absent = sorted(k for k in keys if not re.search(r"(?m)^#?\s*%s\s*=" % re.escape(k), text))
    report("FAIL" if absent else "PASS", rel(f) + " completeness",
           f"does not mention {', '.join(absent)} (set it or add '# key = ...')" if absent
           else f"all {len(keys)} settings of {prog} listed")
missing = [n for n in CONFIG_PROGRAM if n not in config_files]
report("FAIL" if missing else "PASS", "deploy/config coverage",
       f"missing {missing}" if missing else "a settings file for every program")

redis_conf = os.path.join(root, "deploy/config/redis.conf")
if not os.path.exists(redis_conf):
    report("FAIL", "deploy/config/redis.conf", "missing")
elif not shutil.which("redis-server"):
    report("SKIP", "deploy/config/redis.conf", "redis-server is not installed")
else:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    d = os.path.join(tmp, "redis"); os.makedirs(d)
    # The file's own data folder is checked when read: point it here; and
    # its password placeholder is replaced, as the README says to.
    text = open(redis_conf).read()
    if not re.search(r"(?m)^\s*requirepass\s+\S+", text):
        report("FAIL", "deploy/config/redis.conf password", "no requirepass line: Redis would take anyone")
    else:
        report("PASS", "deploy/config/redis.conf password", "requirepass set (a placeholder to replace)")
    conf = os.path.join(d, "redis.conf")
    with open(conf, "w") as fh:
        fh.write(set_redis_password(re.sub(r"(?m)^dir .*$", "dir " + d, text)))
    p = subprocess.Popen(["redis-server", conf, "--port", str(port), "--dir", d,
                          "--bind", "127.0.0.1", "--daemonize", "no", "--supervised", "no",
                          "--logfile", os.path.join(d, "log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    got = {}
    for _ in range(100):
        if p.poll() is not None:
            break
        try:
            for key in ("appendonly", "maxmemory-policy"):
                r = subprocess.run(["redis-cli", "-p", str(port), "config", "get", key],
                                   capture_output=True, text=True, timeout=5, env=redis_env)
                lines = r.stdout.split()
                if len(lines) == 2:
                    got[key] = lines[1]
            if len(got) == 2:
                break
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.1)
    if p.poll() is None:
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, timeout=5)
        ok = "NOAUTH" in r.stdout + r.stderr
        report("PASS" if ok else "FAIL", "deploy/config/redis.conf refuses strangers",
               "PING without the password: NOAUTH" if ok else f"PING without the password: {r.stdout.strip()}")
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=10,
                       env=redis_env)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
        ok = got.get("appendonly") == "yes" and got.get("maxmemory-policy") == "noeviction"
        report("PASS" if ok else "FAIL", "deploy/config/redis.conf",
               "redis-server runs it with appendonly yes, noeviction" if ok else f"redis reports {got}")
    else:
        err = p.stderr.read().strip() if p.stderr else ""
        log = open(os.path.join(d, "log")).read() if os.path.exists(os.path.join(d, "log")) else ""
        report("FAIL", "deploy/config/redis.conf", "redis-server refuses it: " + (err or log)[-300:])

# ---- 4. compose ----
print("== compose (deploy/compose.yaml)")
def subst(v):
    """${VAR:-default} -> default (what compose uses when VAR is unset)."""
    if isinstance(v, str):
        return re.sub(r"\$\{[A-Z0-9_]+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", v)
    if isinstance(v, list):
        return [subst(x) for x in v]
    if isinstance(v, dict):
        return {k: subst(x) for k, x in v.items()}
    return v
compose_docs = docs.get(os.path.join(root, "deploy/compose.yaml"))
if compose_docs:
    c = subst(compose_docs[0])
    services = c.get("services", {})
    for name, svc in services.items():
        what = f"compose service {name}"
        if "image" not in svc and "build" not in svc:
            report("FAIL", what, "no image or build")
            continue
        cmd = svc.get("command")
        if isinstance(cmd, str):
            cmd = cmd.split()
        ep = svc.get("entrypoint")
        if ep:
            cmd = (ep.split() if isinstance(ep, str) else list(ep)) + list(cmd or [])
        if not cmd:
            report("FAIL", what, "no command (the image's default is the broker)")
            continue
        check_command(cmd, what, config_files)
        env = svc.get("environment") or {}
        names = list(env) if isinstance(env, dict) else [e.split("=")[0] for e in env]
        if names:
            check_env(os.path.basename(cmd[0]), names, what)
        if name in ("vision", "text"):
            devs = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
            ok = any(d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or []) for d in devs)
            report("PASS" if ok else "FAIL", what + " GPU", "reserves an nvidia GPU" if ok
                   else "needs deploy.resources.reservations.devices with driver nvidia")
        b = svc.get("build")
        if isinstance(b, dict):
            ctx = os.path.normpath(os.path.join(root, "deploy", b.get("context", ".")))
            df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
            report("PASS" if os.path.exists(df) else "FAIL", what + " build",
                   rel(df) + (" exists" if os.path.exists(df) else " is missing"))
    # Redis and the broker share one password file, kept out of git.
    pw_env = "redis-password.env"
    for name in ("redis", "broker"):
        ef = (services.get(name) or {}).get("env_file") or []
        ef = [ef] if isinstance(ef, str) else ef
        ok = pw_env in [e if isinstance(e, str) else e.get("path") for e in ef]
        report("PASS" if ok else "FAIL", f"compose service {name} Redis password",
               f"env_file {pw_env}" if ok else f"needs env_file {pw_env} (NARRATOR_BROKER_REDIS_PASSWORD)")
    ign = subprocess.run(["git", "-C", root, "check-ignore", "-q", "deploy/" + pw_env])
    report("PASS" if ign.returncode == 0 else "FAIL", f"deploy/{pw_env} not in git",
           "ignored by .gitignore" if ign.returncode == 0 else "add it to .gitignore")
    stages = {"redis", "broker", "vision", "text", "speech", "gateway"} - set(services)
    report("FAIL" if stages else "PASS", "compose services",
           f"missing {stages}" if stages else "redis, broker, vision, text, speech, gateway")

# ---- 5. Kubernetes ----
print("== Kubernetes (deploy/k8s)")
k8s_dir = os.path.join(root, "deploy/k8s")
objects = None
kubectl = shutil.which("kubectl")
if kubectl:
    r = subprocess.run([kubectl, "kustomize", k8s_dir], capture_output=True, text=True, timeout=120)
    if r.returncode == 0:
        objects = [d for d in yaml.safe_load_all(r.stdout) if d]
        report("PASS", "kubectl kustomize deploy/k8s", f"renders {len(objects)} objects")
    else:
        report("FAIL", "kubectl kustomize deploy/k8s", r.stderr.strip()[-500:])
if objects is None:
    if not kubectl:
        report("SKIP", "kubectl kustomize", "kubectl is not installed; reading the files kustomization.yaml lists")
    try:
        kz = yaml.safe_load(open(os.path.join(k8s_dir, "kustomization.yaml")))
        objects = []
        for res in kz.get("resources", []):
            objects += [d for d in yaml.safe_load_all(open(os.path.join(k8s_dir, res))) if d]
    except (OSError, yaml.YAMLError) as e:
        report("FAIL", "deploy/k8s/kustomization.yaml", str(e))
        objects = []
by_kind = {}
for o in objects:
    by_kind.setdefault(o.get("kind"), []).append(o)
configmaps = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", []) if o.get("metadata")}
pvcs = {o["metadata"]["name"] for o in by_kind.get("PersistentVolumeClaim", []) if o.get("metadata")}
workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
for o in objects:
    missing = [k for k in ("apiVersion", "kind") if not o.get(k)]
    if not (o.get("metadata") or {}).get("name"):
        missing.append("metadata.name")
    if missing:
        report("FAIL", f"{o.get('kind')} {(o.get('metadata') or {}).get('name')}", f"missing {missing}")
namespaces = {(o.get("metadata") or {}).get("namespace") for o in objects if o.get("kind") != "Namespace"}
if kubectl and objects:
    report("PASS" if namespaces == {"narrator"} else "FAIL", "k8s namespace",
           "every object in namespace narrator" if namespaces == {"narrator"} else f"namespaces {namespaces}")

# Field names of the API objects used here (core/v1 and apps/v1), to catch
# typos that a render alone lets through (no API server to validate against).
POD_KEYS = {"containers", "initContainers", "volumes", "nodeSelector", "tolerations", "affinity",
            "securityContext", "terminationGracePeriodSeconds", "serviceAccountName",
            "automountServiceAccountToken", "priorityClassName", "restartPolicy", "hostname",
            "imagePullSecrets", "topologySpreadConstraints", "dnsPolicy", "runtimeClassName"}
CONTAINER_KEYS = {"name", "image", "command", "args", "env", "envFrom", "ports", "resources",
                  "securityContext", "volumeMounts", "readinessProbe", "livenessProbe",
                  "startupProbe", "workingDir", "imagePullPolicy", "lifecycle", "stdin", "tty",
                  "terminationMessagePath", "terminationMessagePolicy"}
WORKLOAD_SPEC_KEYS = {"replicas", "selector", "template", "strategy", "serviceName",
                      "volumeClaimTemplates", "updateStrategy", "podManagementPolicy",
                      "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds",
                      "persistentVolumeClaimRetentionPolicy"}

def check_keys(obj, allowed, what):
    bad = sorted(set(obj or {}) - allowed)
    if bad:
        report("FAIL", what, f"unknown field(s) {bad}")

def check_container(c, what, gpu):
    check_keys(c, CONTAINER_KEYS, what + " fields")
    problems = []
    if not c.get("image"):
        problems.append("no image")
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(part) or {}):
                problems.append(f"no resources.{part}.{r}")
    if gpu and str((res.get("limits") or {}).get("nvidia.com/gpu", "")) == "":
        problems.append("no resources.limits nvidia.com/gpu")
    sc = c.get("securityContext") or {}
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    report("FAIL" if problems else "PASS", what, "; ".join(problems) if problems
           else "image, cpu/memory requests and limits" + (", GPU" if gpu else "") + ", no escalation")

for w in workloads:
    name = w["metadata"]["name"]
    what = f"{w['kind']} {name}"
    spec = w.get("spec") or {}
    tpl = spec.get("template") or {}
    labels = (tpl.get("metadata") or {}).get("labels") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        report("FAIL", what, f"selector {sel} does not match pod labels {labels}")
    pod = tpl.get("spec") or {}
    check_keys(spec, WORKLOAD_SPEC_KEYS, what + " spec fields")
    check_keys(pod, POD_KEYS, what + " pod fields")
    gpu = name in ("narrator-worker-vision", "narrator-worker-text")
    if gpu and not pod.get("nodeSelector"):
        report("FAIL", what, "a GPU stage needs a nodeSelector")
    for v in pod.get("volumes") or []:
        if "configMap" in v and v["configMap"].get("name") not in configmaps:
            report("FAIL", what, f"ConfigMap {v['configMap'].get('name')} does not exist")
        if "persistentVolumeClaim" in v and v["persistentVolumeClaim"].get("claimName") not in pvcs:
            report("FAIL", what, f"PVC {v['persistentVolumeClaim'].get('claimName')} does not exist")
    for c in pod.get("containers") or []:
        cwhat = f"{what} container {c.get('name')}"
        check_container(c, cwhat, gpu)
        cmd = (c.get("command") or []) + (c.get("args") or [])
        check_command(cmd, cwhat + " command",
                      {k for cm in configmaps.values() for k in (cm.get("data") or {})})
        names = [e["name"] for e in c.get("env") or [] if "name" in e]
        if names and cmd:
            check_env(os.path.basename(cmd[0]), names, cwhat)
    if name in ("narrator-redis", "narrator-broker"):
        refs = [e for c in pod.get("containers") or [] for e in c.get("env") or []
                if e.get("name") == "NARRATOR_BROKER_REDIS_PASSWORD"]
        ref = ((refs[0].get("valueFrom") or {}).get("secretKeyRef") or {}) if refs else {}
        ok = ref.get("name") == "narrator-redis" and ref.get("key") == "password" and not ref.get("optional")
        report("PASS" if ok else "FAIL", what + " Redis password",
               "NARRATOR_BROKER_REDIS_PASSWORD from Secret narrator-redis (required)" if ok
               else "needs NARRATOR_BROKER_REDIS_PASSWORD from secretKeyRef narrator-redis/password, not optional")
    if name == "narrator-redis":
        ok = w["kind"] == "StatefulSet" and spec.get("volumeClaimTemplates")
        report("PASS" if ok else "FAIL", what + " storage", "StatefulSet with a volume claim"
               if ok else "Redis needs a StatefulSet with volumeClaimTemplates")
    if name == "narrator-broker":
        ok = spec.get("replicas", 1) == 1 and (spec.get("strategy") or {}).get("type") == "Recreate"
        report("PASS" if ok else "FAIL", what + " single", "one replica, Recreate" if ok
               else "the broker must be one replica with strategy Recreate")
for svc in by_kind.get("Service", []):
    what = f"Service {svc['metadata']['name']}"
    sel = (svc.get("spec") or {}).get("selector") or {}
    match = [w for w in workloads if sel and all(
        ((w["spec"]["template"].get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in sel.items())]
    if not match:
        report("FAIL", what, f"selector {sel} matches no workload")
        continue
    ports = {p.get("name") for w in match for c in w["spec"]["template"]["spec"]["containers"]
             for p in c.get("ports") or []}
    ports |= {p.get("containerPort") for w in match for c in w["spec"]["template"]["spec"]["containers"]
              for p in c.get("ports") or []}
    bad = [p.get("targetPort") for p in svc["spec"].get("ports") or [] if p.get("targetPort", p.get("port")) not in ports]
    report("FAIL" if bad else "PASS", what, f"target ports {bad} not in the pods" if bad
           else f"selects {', '.join(w['metadata']['name'] for w in match)}, ports exist")
for cmname, cm in configmaps.items():
    for key, text in (cm.get("data") or {}).items():
        prog = CONFIG_PROGRAM.get(key)
        if not prog:
            report("FAIL", f"ConfigMap {cmname} {key}", "no program reads it")
            continue
        check_config_text(prog, text, f"ConfigMap {cmname} {key}")
for need in ("Namespace", "StatefulSet", "Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"):
    if need not in by_kind:
        report("FAIL", "k8s kinds", f"no {need}")

# ---- 6. Dockerfile ----
print("== Dockerfile (deploy/Dockerfile)")
df = os.path.join(root, "deploy/Dockerfile")
if not os.path.exists(df):
    report("FAIL", "deploy/Dockerfile", "missing")
else:
    text = open(df).read()
    args = dict(re.findall(r"(?m)^ARG (\w+)=(\S+)", text))
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), f)
             for f in re.findall(r"(?m)^FROM (\S+)", text)]
    ok = froms and all(f.startswith("debian:12") for f in froms)
    report("PASS" if ok else "FAIL", "Dockerfile base", f"FROM {', '.join(froms)}")
    missing = []
    for src in re.findall(r"(?m)^COPY (?!--from)(\S+)", text):
        if not os.path.exists(os.path.join(root, src)):
            missing.append(src)
    report("FAIL" if missing else "PASS", "Dockerfile COPY sources",
           f"missing {missing}" if missing else "all exist in the repository")
    ign = os.path.join(root, "deploy/Dockerfile.dockerignore")
    ok = os.path.exists(ign) and "build-*" in open(ign).read()
    report("PASS" if ok else "FAIL", "Dockerfile.dockerignore", "build folders excluded" if ok
           else "deploy/Dockerfile.dockerignore must exclude build folders")

# ---- 7. smoke run of the example settings ----
# Some values are only checked when a program starts (stage-deadlines, the
# metrics address, the model folder): run the example files for real, with
# ports, folders, the model and the device overridden by flags (flags win
# over the file), and narrate one image through gateway-free CLI submit.
print("== smoke run (deploy/config with real processes)")
def free_port():
    sk = socket.socket(); sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]; sk.close()
    return port

def wait_port(port, proc, seconds=20):
    end = time.time() + seconds
    while time.time() < end and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False

def http_get(port, path):
    sk = socket.create_connection(("127.0.0.1", port), timeout=10)
    sk.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = sk.recv(65536)
        if not chunk:
            break
        data += chunk
    sk.close()
    return data.decode("utf-8", "replace")

needed = ["narrator-broker", "narrator-worker-vision", "narrator-worker-text",
          "narrator-worker-speech", "narrator-gateway", "narrate"]
missing = [p for p in needed if not program_path(p)]
model = os.path.join(root, "tests/fixtures/vit-gpt2-tiny")
image = os.path.join(root, "tests/fixtures/images/astronaut_rgba.png")
if missing:
    report("SKIP", "smoke run", f"not built: {', '.join(missing)}")
elif not shutil.which("redis-server") or not os.path.isdir(model) or not os.path.exists(image):
    report("SKIP", "smoke run", "needs redis-server and tests/fixtures (tiny checkpoint, an image)")
else:
    procs = []
    d = os.path.join(tmp, "smoke"); os.makedirs(d)
    logs = {}
    def start(name, argv):
        log = open(os.path.join(d, name + ".log"), "w")
        logs[name] = log.name
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        procs.append(p)
        return p
    def tail(name):
        try:
            return " | ".join(open(logs[name]).read().strip().splitlines()[-4:])
        except (OSError, KeyError):
            return ""
    rport, cport, wport, mport, gport = (free_port() for _ in range(5))
    cfg = lambda n: os.path.join(root, "deploy/config", n)
    try:
        conf = os.path.join(d, "redis.conf")
        with open(conf, "w") as fh:
            fh.write(set_redis_password(re.sub(r"(?m)^dir .*$", "dir " + d, open(cfg("redis.conf")).read())))
        bconf = os.path.join(d, "broker.conf")
        with open(os.open(bconf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(set_broker_password(open(cfg("broker.conf")).read()))
        redis = start("redis", ["redis-server", conf, "--port", str(rport), "--bind", "127.0.0.1",
                                "--supervised", "no", "--daemonize", "no"])
        if not wait_port(rport, redis):
            raise RuntimeError("redis-server did not start: " + tail("redis"))
        broker = start("broker", [program_path("narrator-broker"), "--config", bconf,
                                  "--redis-port", str(rport),
                                  "--client-endpoint", f"tcp://127.0.0.1:{cport}",
                                  "--worker-endpoint", f"tcp://127.0.0.1:{wport}",
                                  "--metrics-listen", f"127.0.0.1:{mport}"])
        if not wait_port(mport, broker) or not wait_port(cport, broker):
            raise RuntimeError("the broker did not start with broker.conf: " + tail("broker"))
        wflags = ["--broker", f"tcp://127.0.0.1:{wport}"]
        mflags = ["--model", model, "--device", "cpu", "--threads", "1"]
        start("vision", [program_path("narrator-worker-vision"), "--config", cfg("worker-vision.conf")] + wflags + mflags)
        start("text", [program_path("narrator-worker-text"), "--config", cfg("worker-text.conf")] + wflags + mflags)
        start("speech", [program_path("narrator-worker-speech"), "--config", cfg("worker-speech.conf")] + wflags)
        gateway = start("gateway", [program_path("narrator-gateway"), "--config", cfg("gateway.conf"),
                                    "--broker", f"tcp://127.0.0.1:{cport}", "--listen-address", "127.0.0.1",
                                    "--port", str(gport), "--static-dir", os.path.join(root, "client/gateway/static")])
        if not wait_port(gport, gateway):
            raise RuntimeError("the gateway did not start with gateway.conf: " + tail("gateway"))
        r = http_get(gport, "/healthz")
        report("PASS" if r.startswith("HTTP/1.1 200") else "FAIL", "smoke: gateway.conf",
               "gateway up, /healthz 200" if r.startswith("HTTP/1.1 200") else r[:200])
        # Every stage has a live worker (from the metrics endpoint).
        end = time.time() + 60
        text = ""
        while time.time() < end:
            text = http_get(mport, "/metrics")
            live = {st: re.search(r'(?m)^narrator_workers\{stage="%s"\} (\d+)' % st, text) for st in ("vision", "text", "speech")}
            if all(m and int(m.group(1)) > 0 for m in live.values()):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("workers did not all register: " + " ; ".join(
                f"{n}: {tail(n)}" for n in ("vision", "text", "speech")))
        report("PASS", "smoke: worker-vision/text/speech.conf", "one live worker per stage")
        out = os.path.join(d, "out")
        r = subprocess.run([program_path("narrate"), "--config", cfg("narrate.conf"),
                            "--broker", f"tcp://127.0.0.1:{cport}", "submit", image, "-o", out],
                           capture_output=True, text=True, timeout=180)
        stem = os.path.basename(image)  # outputs keep the whole name: cat.jpg.txt
        ok = r.returncode == 0 and os.path.getsize(os.path.join(out, stem + ".wav")) > 44 \
            and os.path.exists(os.path.join(out, stem + ".txt"))
        report("PASS" if ok else "FAIL", "smoke: narrate.conf + full route",
               "narrate submit wrote the caption and the WAV" if ok
               else f"narrate exit {r.returncode}: {r.stderr.strip()[-300:]}")
        text = http_get(mport, "/metrics")
        m = re.search(r'(?m)^narrator_jobs\{state="done"\} (\d+)', text)
        ok = m and int(m.group(1)) == 1 and "narrator_stage_duration_seconds_count{stage=\"speech\"} 1" in text
        report("PASS" if ok else "FAIL", "smoke: broker.conf + /metrics",
               "one job done, durations recorded per stage" if ok else text[-500:])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        report("FAIL", "smoke run", str(e))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

print(f"== {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
sys.exit(1 if counts["FAIL"] else 0)
PYEOF
