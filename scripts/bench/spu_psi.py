#!/usr/bin/env python3
"""Benchmark SecretFlow SPU's two-party PSI on loopback, as a baseline for Carrel's PSI.

For each protocol and set size N, the script writes two CSV files with an `id` column.
Each file has N ids from a seeded generator, and N // 2 of them are in both. It then
starts one process per party on 127.0.0.1, runs `spu.psi.psi_execute` in both and
records:

- wall_s: time from the established link to the return of `psi_execute`, the larger
  of the two parties. It includes reading the input CSV and writing the result CSV,
  but not interpreter start-up or the import of spu.
- peak_rss_mb: the peak resident set (VmHWM) of each party process. Importing spu and
  jax accounts for 180 to 290 MiB of it on Linux x86_64 (rss_after_import_mb). The
  `sort` processes that spu starts for intermediate files are not counted.
  ru_maxrss_mb is the largest resident set of the party process and the processes
  it started, from the rusage that wait4 returns.
- bytes_sent: TCP payload bytes that each party sent to the other during
  `psi_execute`, read from the kernel's TCP_INFO of the party's sockets
  (tcpi_bytes_sent minus tcpi_bytes_retrans). spu 0.9.5 keeps its link statistics
  in C++ and does not expose them to Python. The count includes brpc's framing and
  acknowledgements, and the script checks it against the bytes that the peer
  received.
- intersection_size: the receiver's intersection count, which must equal N // 2.

Every run prints one JSON line on standard output. A table of all runs follows on
standard error. Run it with the venv python that scripts/bench/setup-spu.sh creates:

    scripts/bench/setup-spu.sh
    target/bench/spu-venv/bin/python scripts/bench/spu_psi.py --n 1000000

Both parties share the machine's cores, so the figures include that contention.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORK_DIR = REPO_ROOT / "target" / "bench" / "spu-psi"
LOOPBACK = "127.0.0.1"
# NOTE: rr22-low-comm (spu 0.9.5) missed shared ids on small sets in test runs. It
# found 490 and 491 of 500 at N = 1,000 and 4,990 of 5,000 at N = 10,001, but all
# 50,000 at N = 100,000. The intersection check then fails the run.
PROTOCOLS = ("ecdh", "rr22", "rr22-low-comm")

# Offsets in Linux's struct tcp_info (include/uapi/linux/tcp.h). tcpi_bytes_sent
# and tcpi_bytes_retrans exist since Linux 4.19. On older kernels the buffer is
# shorter and the script falls back to tcpi_bytes_acked, which lags behind data
# still in flight.
TCP_INFO_LEN = 256
TCPI_BYTES_ACKED_OFFSET = 120
TCPI_BYTES_RECEIVED_OFFSET = 128
TCPI_BYTES_SENT_OFFSET = 200
TCPI_BYTES_RETRANS_OFFSET = 208

# Largest accepted difference between the bytes one party sent and the bytes its
# peer received, unless 0.1 % of the bytes sent is larger.
BYTES_TOLERANCE = 4096


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark SPU's two-party PSI on 127.0.0.1.",
    )
    parser.add_argument(
        "--n",
        type=int,
        nargs="+",
        default=[1_000_000],
        help="ids per party; one run per value and protocol (default: 1000000)",
    )
    parser.add_argument(
        "--protocols",
        nargs="+",
        choices=PROTOCOLS,
        default=["ecdh", "rr22"],
        help="protocols to run (default: ecdh rr22)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the id generator (default: 1)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help="folder for id files, logs and results (default: target/bench/spu-psi)",
    )
    parser.add_argument(
        "--broadcast",
        action="store_true",
        help="send the result to both parties (default: only party 0, the receiver)",
    )
    parser.add_argument(
        "--align",
        action="store_true",
        help="let spu sort both outputs into the same order (disable_alignment=False)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds before a run's two processes are killed (default: 3600)",
    )
    parser.add_argument(
        "--keep-outputs",
        action="store_true",
        help="keep the intersection CSV files and spu's temporary folders of each run",
    )
    parser.add_argument("--party", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


# ---------------------------------------------------------------------------
# Input files


def write_id_files(work_dir: Path, n: int, seed: int) -> tuple[Path, Path]:
    """Write the two parties' id files unless files with N ids already exist.

    The ids are distinct random integers in [0, 2^63), so both files contain N ids and
    exactly N // 2 of them are in both. Each file is shuffled, so the shared ids sit
    at unrelated positions. The files are the same for the same seed and numpy version.
    """
    import numpy as np

    paths = (
        work_dir / f"ids_n{n}_seed{seed}_party0.csv",
        work_dir / f"ids_n{n}_seed{seed}_party1.csv",
    )
    if all(path.exists() and count_data_rows(path) == n for path in paths):
        return paths

    shared = n // 2
    total = 2 * n - shared
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 2**63, size=total, dtype=np.int64)
    if np.unique(ids).size != total:
        raise SystemExit(
            f"error: seed {seed} drew a repeated id for n={n}; use another --seed"
        )

    party0 = rng.permutation(ids[:n])
    party1 = rng.permutation(ids[n - shared :])
    for path, values in zip(paths, (party0, party1)):
        write_id_csv(path, values)
    return paths


def write_id_csv(path: Path, values) -> None:
    """Write a one-column CSV `id` atomically, in chunks to bound memory."""
    chunk = 1_000_000
    partial = path.parent / f"{path.name}.{os.getpid()}.partial"
    with open(partial, "w", encoding="ascii") as out:
        out.write("id\n")
        for start in range(0, len(values), chunk):
            out.write("\n".join(map(str, values[start : start + chunk].tolist())))
            out.write("\n")
    partial.replace(path)


def count_data_rows(path: Path) -> int:
    """Return the number of lines after the header line."""
    lines = 0
    with open(path, "rb") as file:
        while block := file.read(1 << 24):
            lines += block.count(b"\n")
    return max(lines - 1, 0)


# ---------------------------------------------------------------------------
# Party process (runs with --party CONFIG)


def tcp_byte_counts(peer_ports: set[int]) -> dict[str, tuple[int, int, int]]:
    """Return (bytes sent, bytes received, bytes retransmitted) per TCP socket.

    Bytes sent count each payload byte once, so retransmissions are left out. Only
    sockets whose local or remote port is one of the parties' link ports are counted.
    The key is "local_port-remote_port", so two snapshots can be subtracted.
    """
    counts = {}
    for fd_name in os.listdir("/proc/self/fd"):
        fd = int(fd_name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue  # the descriptor was closed after listdir
        try:
            if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM:
                continue
            try:
                local = sock.getsockname()
                remote = sock.getpeername()
            except OSError:
                continue  # a listening or unconnected socket
            if local[1] not in peer_ports and remote[1] not in peer_ports:
                continue
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
            (received,) = struct.unpack_from("Q", info, TCPI_BYTES_RECEIVED_OFFSET)
            if len(info) >= TCPI_BYTES_RETRANS_OFFSET + 8:
                (sent_with_retransmissions,) = struct.unpack_from(
                    "Q", info, TCPI_BYTES_SENT_OFFSET
                )
                (retransmitted,) = struct.unpack_from(
                    "Q", info, TCPI_BYTES_RETRANS_OFFSET
                )
            else:
                (sent_with_retransmissions,) = struct.unpack_from(
                    "Q", info, TCPI_BYTES_ACKED_OFFSET
                )
                retransmitted = 0
            sent = sent_with_retransmissions - retransmitted
            counts[f"{local[1]}-{remote[1]}"] = (sent, received, retransmitted)
        finally:
            sock.close()  # closes the duplicate only
    return counts


def read_status_kib(field: str) -> int:
    """Return a memory field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def build_protocol_config(psi, protocol: str, broadcast: bool):
    """Return spu's PsiProtocolConfig for a name in PROTOCOLS, receiver rank 0."""
    config = psi.PsiProtocolConfig(receiver_rank=0, broadcast_result=broadcast)
    if protocol == "ecdh":
        config.protocol = psi.PsiProtocol.PROTOCOL_ECDH
        config.ecdh_params = psi.EcdhParams(curve=psi.EllipticCurveType.CURVE_25519)
    elif protocol in ("rr22", "rr22-low-comm"):
        config.protocol = psi.PsiProtocol.PROTOCOL_RR22
        config.rr22_params = psi.Rr22Rarams(low_comm_mode=protocol == "rr22-low-comm")
    else:
        raise ValueError(
            f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}"
        )
    return config


def run_party(config_path: Path) -> None:
    """Run one party of a PSI and write its measurements to the config's result path."""
    config = json.loads(config_path.read_text())
    rank = config["rank"]
    ports = config["ports"]

    import spu
    import spu.libspu as libspu
    import spu.psi as psi

    rss_after_import_kib = read_status_kib("VmRSS")

    desc = libspu.link.Desc()
    desc.id = config["run_id"]
    for party_rank, port in enumerate(ports):
        desc.add_party(f"party{party_rank}", f"{LOOPBACK}:{port}")
    # spu's defaults are 10 connection attempts 1 s apart and a 30 s receive timeout.
    # The peer may still be importing spu, and the wait for a peer's next message grows
    # with N, so both limits are raised.
    desc.connect_retry_times = 120
    desc.connect_retry_interval_ms = 1000
    desc.recv_timeout_ms = int(config["timeout_s"] * 1000)
    lctx = libspu.link.create_brpc(desc, rank)

    execute_config = psi.PsiExecuteConfig(
        protocol_conf=build_protocol_config(
            psi, config["protocol"], config["broadcast"]
        ),
        input_params=psi.InputParams(
            path=config["input"], selected_keys=["id"], keys_unique=True
        ),
        output_params=psi.OutputParams(
            path=config["output"], disable_alignment=not config["align"]
        ),
    )

    link_ports = set(ports)
    bytes_before = tcp_byte_counts(link_ports)
    start = time.perf_counter()
    report = psi.psi_execute(execute_config, lctx)
    wall_s = time.perf_counter() - start
    bytes_after = tcp_byte_counts(link_ports)

    # The peer may still be sending when this party's psi_execute returns. After the
    # barrier, the peer has finished too, and its requests have arrived because brpc
    # sends them in order on one connection. The received count then includes the
    # peer's barrier message, and a few acknowledgements may still be in flight.
    lctx.barrier()
    bytes_after_barrier = tcp_byte_counts(link_ports)

    no_bytes = (0, 0, 0)
    sent = sum(
        after[0] - bytes_before.get(key, no_bytes)[0]
        for key, after in bytes_after.items()
    )
    retransmitted = sum(
        after[2] - bytes_before.get(key, no_bytes)[2]
        for key, after in bytes_after.items()
    )
    received = sum(
        after[1] - bytes_before.get(key, no_bytes)[1]
        for key, after in bytes_after_barrier.items()
    )

    result = {
        "rank": rank,
        "spu_version": spu.__version__,
        "wall_s": wall_s,
        "peak_rss_kib": read_status_kib("VmHWM"),
        "rss_after_import_kib": rss_after_import_kib,
        "bytes_sent": sent,
        "bytes_received": received,
        "bytes_retransmitted": retransmitted,
        "tcp_sockets": len(bytes_after),
        "original_count": report.original_count,
        "intersection_count": report.intersection_count,
    }
    Path(config["result"]).write_text(json.dumps(result))
    lctx.stop_link()


# ---------------------------------------------------------------------------
# Driver


def free_loopback_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago.

    NOTE: another process could take the port before spu binds it. The run then
    fails with a bind error in the party's log, and a rerun picks new ports.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for_parties(
    pids: list[int], timeout_s: float
) -> dict[int, tuple[int, resource.struct_rusage]]:
    """Wait for both party processes and return each one's exit status and rusage.

    When one party fails, the other would wait for messages that never come, so it
    is killed after a 10 s grace period. Both are killed at the timeout.
    """
    deadline = time.monotonic() + timeout_s
    kill_at = None
    done: dict[int, tuple[int, resource.struct_rusage]] = {}
    while len(done) < len(pids):
        for pid in pids:
            if pid in done:
                continue
            waited_pid, status, usage = os.wait4(pid, os.WNOHANG)
            if waited_pid == pid:
                done[pid] = (os.waitstatus_to_exitcode(status), usage)
                if done[pid][0] != 0 and kill_at is None:
                    kill_at = time.monotonic() + 10
        now = time.monotonic()
        if now > deadline or (kill_at is not None and now > kill_at):
            for pid in pids:
                if pid not in done:
                    print(f"killing party process {pid}", file=sys.stderr)
                    os.kill(pid, signal.SIGKILL)
            deadline = kill_at = float("inf")
        time.sleep(0.05)
    return done


def remove_spu_traces(log_paths: list[Path]) -> None:
    """Delete the trace files that spu wrote to /tmp, as named in the parties' logs.

    spu 0.9.5 writes them to /tmp even when TMPDIR is set, and does not delete them.
    """
    pattern = re.compile(r"Trace has been written to (/tmp/psi_[A-Za-z0-9_-]+\.trace)")
    for log_path in log_paths:
        for match in pattern.finditer(log_path.read_text(errors="replace")):
            Path(match.group(1)).unlink(missing_ok=True)


def run_once(
    args: argparse.Namespace, protocol: str, n: int, inputs: tuple[Path, Path]
) -> dict:
    """Run one PSI between two fresh party processes and return its JSON record."""
    run_id = f"{protocol}-n{n}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    run_dir = args.work_dir / run_id
    run_dir.mkdir(parents=True)
    spu_tmp = run_dir / "tmp"
    spu_tmp.mkdir()
    ports = [free_loopback_port(), free_loopback_port()]
    while ports[1] == ports[0]:
        ports[1] = free_loopback_port()

    processes = []
    log_paths = []
    result_paths = []
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    for rank in range(2):
        config = {
            "rank": rank,
            "run_id": run_id,
            "ports": ports,
            "protocol": protocol,
            "broadcast": args.broadcast,
            "align": args.align,
            "timeout_s": args.timeout,
            "input": str(inputs[rank].resolve()),
            "output": str((run_dir / f"intersection_party{rank}.csv").resolve()),
            "result": str(run_dir / f"result_party{rank}.json"),
        }
        config_path = run_dir / f"config_party{rank}.json"
        config_path.write_text(json.dumps(config))
        log_path = run_dir / f"party{rank}.log"
        log_paths.append(log_path)
        result_paths.append(Path(config["result"]))
        # spu creates its temporary folders under TMPDIR, here inside the run folder.
        env = dict(os.environ, TMPDIR=str(spu_tmp.resolve()))
        with open(log_path, "wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--party",
                        str(config_path),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
    exits = wait_for_parties([process.pid for process in processes], args.timeout)
    for process in processes:
        # wait4 already reaped the process, so Popen cannot read its exit code itself.
        process.returncode = exits[process.pid][0]
    process_wall_s = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    remove_spu_traces(log_paths)

    failed = [rank for rank, process in enumerate(processes) if process.returncode != 0]
    if failed:
        details = "; ".join(
            f"party {rank} exited with {processes[rank].returncode} "
            f"(log {log_paths[rank]})"
            for rank in failed
        )
        raise SystemExit(
            f"error: {protocol} n={n} failed: {details}. "
            "Exit code -N means killed by signal N."
        )
    parties = [json.loads(path.read_text()) for path in result_paths]

    receiver_output_rows = count_data_rows(run_dir / "intersection_party0.csv")
    expected = n // 2
    intersection = parties[0]["intersection_count"]
    # The two counts differ by a few hundred bytes in either direction: the received
    # count includes the peer's barrier message (see run_party), and brpc's
    # acknowledgements travel on the other connection, so some may not have arrived yet.
    unmatched_bytes = [
        parties[1]["bytes_received"] - parties[0]["bytes_sent"],
        parties[0]["bytes_received"] - parties[1]["bytes_sent"],
    ]
    checks = {
        "intersection_matches_expected": intersection == expected,
        "receiver_output_rows_match": receiver_output_rows == intersection,
        "bytes_match_peer_received": all(
            abs(difference) <= max(BYTES_TOLERANCE, 0.001 * party["bytes_sent"])
            for difference, party in zip(unmatched_bytes, parties)
        ),
    }
    if not args.keep_outputs:
        shutil.rmtree(spu_tmp)
        for rank in range(2):
            (run_dir / f"intersection_party{rank}.csv").unlink(missing_ok=True)

    return {
        "protocol": protocol,
        "n": n,
        "wall_s": round(max(party["wall_s"] for party in parties), 3),
        "peak_rss_mb": [round(party["peak_rss_kib"] / 1024, 1) for party in parties],
        "bytes_sent": [party["bytes_sent"] for party in parties],
        "intersection_size": intersection,
        "expected_intersection": expected,
        "checks": checks,
        "wall_s_per_party": [round(party["wall_s"], 3) for party in parties],
        "process_wall_s": round(process_wall_s, 3),
        "rss_after_import_mb": [
            round(party["rss_after_import_kib"] / 1024, 1) for party in parties
        ],
        "ru_maxrss_mb": [
            round(exits[process.pid][1].ru_maxrss / 1024, 1) for process in processes
        ],
        "bytes_received": [party["bytes_received"] for party in parties],
        "bytes_unmatched": unmatched_bytes,
        "bytes_retransmitted": [party["bytes_retransmitted"] for party in parties],
        "tcp_sockets": [party["tcp_sockets"] for party in parties],
        "receiver_output_rows": receiver_output_rows,
        "broadcast_result": args.broadcast,
        "aligned_output": args.align,
        "spu_version": parties[0]["spu_version"],
        "load_avg_1m": [load_before, load_after],
        "cpus": os.cpu_count(),
        "run_dir": str(run_dir),
    }


def format_table(records: list[dict]) -> str:
    """Return a plain-text table of the runs' main figures."""
    header = (
        f"{'protocol':<14} {'n':>11} {'wall s':>8} "
        f"{'RSS MiB p0':>10} {'RSS MiB p1':>10} {'sent MB p0':>10} {'sent MB p1':>10} "
        f"{'intersection':>12} {'checks':>6}"
    )
    lines = [header, "-" * len(header)]
    for record in records:
        rss = record["peak_rss_mb"]
        sent_mb = [value / 1e6 for value in record["bytes_sent"]]
        status = "ok" if all(record["checks"].values()) else "FAILED"
        lines.append(
            f"{record['protocol']:<14} {record['n']:>11,} {record['wall_s']:>8.2f} "
            f"{rss[0]:>10.1f} {rss[1]:>10.1f} {sent_mb[0]:>10.1f} {sent_mb[1]:>10.1f} "
            f"{record['intersection_size']:>12,} {status:>6}"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.party is not None:
        run_party(args.party)
        return

    try:
        import spu.psi  # noqa: F401
    except ImportError as error:
        raise SystemExit(
            f"error: spu is not importable by {sys.executable} ({error}); "
            "run scripts/bench/setup-spu.sh and use target/bench/spu-venv/bin/python"
        ) from error
    if any(n < 2 for n in args.n):
        raise SystemExit(
            f"error: --n must be at least 2, so that the parties share an id "
            f"(got {min(args.n)})"
        )

    args.work_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for n in args.n:
        print(f"writing id files for n={n:,} (seed {args.seed})", file=sys.stderr)
        inputs = write_id_files(args.work_dir, n, args.seed)
        for protocol in args.protocols:
            print(f"running {protocol} n={n:,}", file=sys.stderr)
            record = run_once(args, protocol, n, inputs)
            print(json.dumps(record), flush=True)
            records.append(record)

    print(format_table(records), file=sys.stderr)
    if not all(all(record["checks"].values()) for record in records):
        raise SystemExit(
            "error: at least one run failed its checks; see the JSON lines above"
        )


if __name__ == "__main__":
    main()
