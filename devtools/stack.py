"""The local stack: a single-node Kafka (KRaft) broker and FerretDB, started by the project.

No Docker and nothing installed by hand: the Kafka jars come from Maven Central through
``deploy/kafka/pom.xml`` and FerretDB is built from the Go module proxy. Builds are cached
under ``<build-dir>`` (default ``.stack/build``), data lives under ``<data-dir>`` (default
``.stack/data``). Ports and folders are parameters, so tests that kill or break a server
start private instances and never touch the shared one.

Usage::

    python -m devtools.stack up|down|status|clean [--data-dir D] [--kafka-port P] ...
    python -m devtools.stack with-stack -- CMD ...   # stack up, run CMD, stop what we started
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fraudwatch.clients import (
    TOPICS,
    TopicSetupError,
    admin_client,
    ensure_topics,
    mongo_at,
    mongo_client,
    plaintext_kafka,
)
from fraudwatch.settings import LOCAL_KAFKA, LOCAL_MONGODB, KafkaSettings, MongoSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_LOG4J = REPO_ROOT / "deploy" / "kafka" / "log4j2.properties"
FERRETDB_PATCHES = REPO_ROOT / "deploy" / "ferretdb" / "patches"
KAFKA_VERSION = "4.1.1"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
# Our local patch level of that build (deploy/ferretdb/patches, applied in name order by
# _build_ferretdb); bump it whenever a patch changes, to force a rebuild.
FERRETDB_PATCH = "fw5"
# The "upstream" variant gets only this patch (it changes no query result): the differential
# test compares the full patch set against it.
FERRETDB_UPSTREAM_PATCHES = ("0001-leak-tracker-logs-instead-of-panicking.patch",)


class StackError(RuntimeError):
    """The local stack could not be built, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class StackConfig:
    """Where one stack instance keeps its files and which loopback ports it uses."""

    data_dir: Path = REPO_ROOT / ".stack" / "data"
    build_dir: Path = REPO_ROOT / ".stack" / "build"
    kafka_port: int = 9092
    controller_port: int = 9093
    mongo_port: int = 27017
    topics: dict[str, int] = field(default_factory=lambda: dict(TOPICS))
    start_timeout_s: float = 90.0
    # "patched" (every patch in deploy/ferretdb/patches) or "upstream" (only the leak-tracker
    # one: FerretDB's own query behaviour, for the differential test).
    ferretdb_variant: str = "patched"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}"


# --------------------------------------------------------------------------- helpers


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _pid_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker`` (guards PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return marker.encode() in cmdline


def _reap(pid: int) -> None:
    """Collect the exit status of a server we started ourselves, so no zombie is left."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _need(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StackError(f"`{tool}` is not on PATH: {hint}")
    return path


def kafka_properties(c: StackConfig) -> str:
    """The broker's configuration: broker and controller listen on 127.0.0.1 only."""
    log_dir = c.data_dir / "kafka"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{c.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{c.kafka_port},"
            f"CONTROLLER://127.0.0.1:{c.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{c.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={log_dir}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "message.max.bytes=1048588",
            "",
        ]
    )


# --------------------------------------------------------------------------- services


@dataclass(frozen=True)
class _Service:
    name: str
    marker: str  # a string in the process's command line
    port: int
    pid_file: Path
    log_file: Path


class LocalStack:
    """Builds, starts, checks and stops one local stack instance."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        c = self.config
        self.kafka = _Service(
            "kafka",
            f"kafka-{c.kafka_port}.properties",
            c.kafka_port,
            c.data_dir / "kafka.pid",
            c.data_dir / "kafka.log",
        )
        self.mongo = _Service(
            "ferretdb",
            f"--listen-addr=127.0.0.1:{c.mongo_port}",
            c.mongo_port,
            c.data_dir / "ferretdb.pid",
            c.data_dir / "ferretdb.log",
        )

    # ---------------------------------------------------------------- build (cached)

    @property
    def kafka_libs(self) -> Path:
        return self.config.build_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    @property
    def ferretdb_bin(self) -> Path:
        variant = "" if self.config.ferretdb_variant == "patched" else "-upstream"
        name = f"ferretdb-{FERRETDB_VERSION}{variant}-{FERRETDB_PATCH}"
        return self.config.build_dir / name / "ferretdb"

    def ferretdb_patches(self) -> list[Path]:
        """The patches this stack's FerretDB variant is built with, in the order applied."""
        patches = sorted(FERRETDB_PATCHES.glob("*.patch"))
        if self.config.ferretdb_variant == "upstream":
            return [p for p in patches if p.name in FERRETDB_UPSTREAM_PATCHES]
        if self.config.ferretdb_variant != "patched":
            raise StackError(f"unknown FerretDB variant {self.config.ferretdb_variant!r}")
        return patches

    def build(self) -> None:
        """Fetch the Kafka jars and build FerretDB unless they are cached already."""
        self._build_kafka()
        self._build_ferretdb()

    def _build_kafka(self) -> None:
        done = self.kafka_libs / ".complete"
        if done.exists():
            return
        _need("java", "install OpenJDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
        mvn = _need("mvn", "install Maven (Debian: apt-get install maven)")
        print(f"[stack] fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central ...")
        tmp = self.kafka_libs.with_name("libs.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                "Maven could not fetch the Kafka jars:\n" + (result.stdout + result.stderr)[-3000:]
            )
        shutil.rmtree(self.kafka_libs, ignore_errors=True)
        tmp.rename(self.kafka_libs)
        done.touch()

    def _build_ferretdb(self) -> None:
        if self.ferretdb_bin.exists():
            return
        go = _need("go", "install Go >= 1.24 (https://go.dev/doc/install)")
        print(f"[stack] building FerretDB {FERRETDB_VERSION} from the Go module proxy ...")
        env = {**os.environ, "GOFLAGS": "-mod=mod"}
        dl = subprocess.run(
            [go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            cwd=self.config.build_dir,
        )
        if dl.returncode != 0:
            raise StackError(f"`go mod download` of FerretDB failed:\n{dl.stdout}{dl.stderr}")
        import json

        module_dir = Path(json.loads(dl.stdout)["Dir"])
        # The module zip has no build/version/version.txt (release builds generate it), and
        # FerretDB refuses to start without one; build from a writable copy that has it.
        src = self.ferretdb_bin.parent / "src"
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(module_dir, src)
        for p in src.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
            else:
                p.chmod(0o644)
        (src / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
        # Our patch set (deploy/ferretdb/patches/README.md says what each one does and why).
        git = _need("git", "install git")
        for patch in self.ferretdb_patches():
            applied = subprocess.run(
                [git, "apply", "--whitespace=nowarn", str(patch)],
                cwd=src,
                capture_output=True,
                text=True,
                check=False,
                # src may lie inside a git checkout (.stack/build): keep git from using it
                env={**os.environ, "GIT_CEILING_DIRECTORIES": str(src.parent)},
            )
            if applied.returncode != 0:
                raise StackError(
                    f"cannot apply {patch.name} to FerretDB {FERRETDB_VERSION}:\n"
                    + applied.stdout
                    + applied.stderr
                )
        out = self.ferretdb_bin.with_suffix(".tmp")
        build = subprocess.run(
            [go, "build", "-trimpath", "-o", str(out), "./cmd/ferretdb"],
            cwd=src,
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if build.returncode != 0:
            raise StackError(f"building FerretDB failed:\n{(build.stdout + build.stderr)[-3000:]}")
        out.rename(self.ferretdb_bin)
        shutil.rmtree(src, ignore_errors=True)

    # ---------------------------------------------------------------- lifecycle

    def _running_pid(self, svc: _Service) -> int | None:
        try:
            pid = int(svc.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid, svc.marker) else None

    def _check_port_free(self, svc: _Service) -> None:
        if _port_open(svc.port):
            raise StackError(
                f"port {svc.port} on 127.0.0.1 is taken by another process, so {svc.name} "
                f"cannot start. Stop that process (`ss -ltnp 'sport = :{svc.port}'` shows it), "
                "or point the settings at it with KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI."
            )

    def _spawn(self, svc: _Service, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        svc.log_file.parent.mkdir(parents=True, exist_ok=True)
        with svc.log_file.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.config.data_dir,
                start_new_session=True,  # Ctrl-C in a terminal must not reach the servers
            )
        svc.pid_file.write_text(str(proc.pid))
        return proc

    def _wait_until(
        self, svc: _Service, proc: subprocess.Popen[bytes], ready: Callable[[], bool]
    ) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"{svc.name} exited during start-up. Last lines of {svc.log_file}:\n"
                    + _log_tail(svc.log_file)
                )
            try:
                if ready():
                    return
            except Exception as exc:  # readiness probes fail in many ways while starting
                last_error = str(exc)
            time.sleep(0.2)
        raise StackError(
            f"{svc.name} did not answer on 127.0.0.1:{svc.port} within "
            f"{self.config.start_timeout_s:.0f}s ({last_error}). Last lines of {svc.log_file}:\n"
            + _log_tail(svc.log_file)
        )

    def start_kafka(self) -> bool:
        """Start the broker unless it runs already. Returns True when this call started it."""
        c = self.config
        if self._running_pid(self.kafka) is not None:
            return False
        self._check_port_free(self.kafka)
        if _port_open(c.controller_port):
            raise StackError(f"Kafka's controller port {c.controller_port} is taken.")
        java = _need("java", "install OpenJDK 17+")
        log_dir = c.data_dir / "kafka"
        props = c.data_dir / f"kafka-{c.kafka_port}.properties"
        props.parent.mkdir(parents=True, exist_ok=True)
        props.write_text(kafka_properties(c))
        classpath = f"{self.kafka_libs}/*"
        base = [java, "-cp", classpath, f"-Dlog4j2.configurationFile={KAFKA_LOG4J}"]
        if not (log_dir / "meta.properties").exists():
            fmt = subprocess.run(
                [
                    *base,
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={_kafka_cluster_id()}",
                    "-c",
                    str(props),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        proc = self._spawn(
            self.kafka,
            [
                *base,
                "-Xms256m",
                "-Xmx1g",
                "-XX:+UseG1GC",
                f"-Dkafka.logs.dir={c.data_dir}",
                "kafka.Kafka",
                str(props),
            ],
        )
        self._wait_until(self.kafka, proc, lambda: _kafka_ready(c.bootstrap))
        return True

    def start_mongo(self) -> bool:
        """Start FerretDB unless it runs already. Returns True when this call started it."""
        c = self.config
        if self._running_pid(self.mongo) is not None:
            return False
        self._check_port_free(self.mongo)
        data = c.data_dir / "ferretdb"
        data.mkdir(parents=True, exist_ok=True)
        proc = self._spawn(
            self.mongo,
            [
                str(self.ferretdb_bin),
                "--handler=sqlite",
                f"--sqlite-url=file:{data}/",
                f"--state-dir={data}",
                f"--listen-addr=127.0.0.1:{c.mongo_port}",
                "--telemetry=disable",
                "--debug-addr=-",
                "--log-level=warn",
            ],
        )
        self._wait_until(self.mongo, proc, lambda: _mongo_ready(c.mongodb_uri))
        return True

    def create_topics(self) -> None:
        """Create the topics if missing; an existing topic with fewer partitions is an error."""
        try:
            ensure_topics(plaintext_kafka(self.config.bootstrap), self.config.topics)
        except TopicSetupError as exc:
            raise StackError(str(exc)) from exc

    def up(self, kafka: bool = True, mongo: bool = True) -> list[str]:
        """Build what is missing, start what is not running, create topics.

        Returns the names of the services this call started (so a caller can stop only those).
        """
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.config.build_dir.mkdir(parents=True, exist_ok=True)
        if kafka:
            self._build_kafka()
        if mongo:
            self._build_ferretdb()
        started = []
        if kafka and self.start_kafka():
            started.append("kafka")
        if mongo and self.start_mongo():
            started.append("ferretdb")
        if kafka:
            self.create_topics()
        return started

    def stop(self, names: Sequence[str] = ("kafka", "ferretdb"), timeout_s: float = 30.0) -> None:
        """Stop services cleanly (SIGTERM), then by force if they do not exit in time."""
        for svc in (self.kafka, self.mongo):
            if svc.name not in names:
                continue
            pid = self._running_pid(svc)
            if pid is None:
                svc.pid_file.unlink(missing_ok=True)
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and _pid_alive(pid, svc.marker):
                time.sleep(0.1)
            if _pid_alive(pid, svc.marker):
                print(f"[stack] {svc.name} ignored SIGTERM for {timeout_s:.0f}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                while _pid_alive(pid, svc.marker):
                    time.sleep(0.05)
            _reap(pid)
            svc.pid_file.unlink(missing_ok=True)

    def kill(self, name: str) -> None:
        """SIGKILL one service (for failure tests)."""
        svc = self.kafka if name == "kafka" else self.mongo
        pid = self._running_pid(svc)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            while _pid_alive(pid, svc.marker):
                time.sleep(0.05)
            _reap(pid)

    def status(self) -> dict[str, int | None]:
        return {svc.name: self._running_pid(svc) for svc in (self.kafka, self.mongo)}

    def clean(self) -> None:
        self.stop()
        shutil.rmtree(self.config.data_dir, ignore_errors=True)


def _kafka_cluster_id() -> str:
    """A fresh cluster id in Kafka's format: a base64url-encoded random 16-byte UUID."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]


# librdkafka logs every refused connection of a probe ("Connect to ipv4#... failed:
# Connection refused"), dozens of lines while the broker starts; a probe's failures are
# expected, so its client logs here and the lines go nowhere.
_PROBE_LOG = logging.getLogger("fraudwatch.stack.probe")
_PROBE_LOG.addHandler(logging.NullHandler())
_PROBE_LOG.propagate = False


def _kafka_ready(bootstrap: str) -> bool:
    """True when the broker at ``bootstrap`` answers a metadata request; prints nothing."""
    host, _, port = bootstrap.rpartition(":")
    if not _port_open(int(port), host or "127.0.0.1"):
        return False  # not listening yet: no client, so no librdkafka log lines
    admin = admin_client(
        plaintext_kafka(bootstrap), {"socket.timeout.ms": 2000, "logger": _PROBE_LOG}
    )
    md = admin.list_topics(timeout=2)
    return bool(md.brokers)


def _mongo_ready(uri: str) -> bool:
    with mongo_client(
        mongo_at(uri), serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
    ) as client:
        client.admin.command("ping")
    return True


@contextlib.contextmanager
def running_stack(config: StackConfig | None = None) -> Iterator[LocalStack]:
    """Context manager: a stack that is up inside the block; stops only what it started."""
    stack = LocalStack(config)
    started = stack.up()
    try:
        yield stack
    finally:
        stack.stop(started)


def _external(kafka: KafkaSettings, mongo: MongoSettings) -> tuple[bool, bool]:
    """Which services the settings point elsewhere (then nothing local is started for them)."""
    local_kafka = {LOCAL_KAFKA, "127.0.0.1:9092"}
    local_mongo = {LOCAL_MONGODB, "mongodb://127.0.0.1:27017"}
    return (
        kafka.kafka_bootstrap_servers not in local_kafka,
        mongo.mongodb_uri.rstrip("/") not in local_mongo,
    )


# --------------------------------------------------------------------------- CLI


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options may come before or after the command; ``with-stack``'s command follows ``--``."""
    args = list(sys.argv[1:] if argv is None else argv)
    cmd: list[str] = []
    if "--" in args:
        at = args.index("--")
        args, cmd = args[:at], args[at + 1 :]
    p = argparse.ArgumentParser(prog="python -m devtools.stack", description=__doc__)
    p.add_argument("command", choices=["up", "down", "status", "clean", "build", "with-stack"])
    p.add_argument("--data-dir", type=Path, default=StackConfig.data_dir)
    p.add_argument("--build-dir", type=Path, default=StackConfig.build_dir)
    p.add_argument("--kafka-port", type=int, default=9092)
    p.add_argument("--controller-port", type=int, default=None)
    p.add_argument("--mongo-port", type=int, default=27017)
    parsed = p.parse_args(args)
    parsed.cmd = cmd
    return parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m devtools.stack`` / ``fraudwatch-stack``."""
    args = _parse(argv)
    config = StackConfig(
        data_dir=args.data_dir.resolve(),
        build_dir=args.build_dir.resolve(),
        kafka_port=args.kafka_port,
        controller_port=args.controller_port or args.kafka_port + 1,
        mongo_port=args.mongo_port,
    )
    stack = LocalStack(config)
    ext_kafka, ext_mongo = _external(KafkaSettings(), MongoSettings())
    if ext_kafka:
        print("[stack] KAFKA_BOOTSTRAP_SERVERS points elsewhere: not starting a local Kafka")
    if ext_mongo:
        print("[stack] MONGODB_URI points elsewhere: not starting a local FerretDB")
    try:
        if args.command == "build":
            stack.build()
        elif args.command == "up":
            t0 = time.monotonic()
            started = stack.up(kafka=not ext_kafka, mongo=not ext_mongo)
            what = ", ".join(started) if started else "nothing (already running)"
            print(f"[stack] up in {time.monotonic() - t0:.1f}s; started: {what}")
            print(f"[stack] Kafka {config.bootstrap}  MongoDB {config.mongodb_uri}")
        elif args.command == "down":
            stack.stop()
            print("[stack] stopped")
        elif args.command == "status":
            for name, pid in stack.status().items():
                print(f"{name:9s} {'running, pid ' + str(pid) if pid else 'stopped'}")
        elif args.command == "clean":
            stack.clean()
            print(f"[stack] stopped and wiped {config.data_dir}")
        elif args.command == "with-stack":
            cmd = args.cmd
            if not cmd:
                raise StackError("with-stack needs a command after --")
            started = stack.up(kafka=not ext_kafka, mongo=not ext_mongo)
            try:
                return subprocess.call(cmd)
            except KeyboardInterrupt:
                return 130
            finally:
                stack.stop(started)
    except StackError as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
