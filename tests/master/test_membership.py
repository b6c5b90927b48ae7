"""Workers join under leases; a killed worker leaves on its own."""

from __future__ import annotations

from tests.fixtures.mesh import WORKER_TTL, Mesh, run_cli, wait_until


def test_workers_register_with_their_tiers(cluster: Mesh) -> None:
    with cluster.client() as client:
        workers = client.workers()
    assert {w.address for w in workers} == {w.address for w in cluster.workers}
    for w in workers:
        assert {(t.name, t.capacity_bytes) for t in w.tiers} == {
            ("MEM", 64 * 1024**2),
            ("DISK", 256 * 1024**2),
        }
    shown = run_cli("workers", master=cluster.address)
    assert shown.returncode == 0, shown.stderr
    for w in workers:
        assert w.worker_id in shown.stdout and w.address in shown.stdout


def test_a_killed_worker_leaves_within_its_lease(cluster: Mesh) -> None:
    victim = cluster.workers[0]
    victim.kill()
    with cluster.client() as client:
        took = wait_until(
            lambda: victim.address not in {w.address for w in client.workers()},
            WORKER_TTL + 10,
            "the killed worker to leave",
        )
        assert took <= WORKER_TTL + 3
        assert {w.address for w in client.workers()} == {cluster.workers[1].address}


def test_a_restarted_worker_keeps_its_identity(cluster: Mesh) -> None:
    worker = cluster.workers[0]
    with cluster.client() as client:
        before = {w.address: w.worker_id for w in client.workers()}[worker.address]
        worker.stop()
        worker.start()
        wait_until(
            lambda: worker.address in {w.address for w in client.workers()}, 30, "re-registration"
        )
        after = {w.address: w.worker_id for w in client.workers()}[worker.address]
    assert after == before
