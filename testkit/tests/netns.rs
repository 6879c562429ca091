//! Namespace lifecycle: a topology's namespaces and processes are gone after it is dropped,
//! and namespaces left by a killed run (whose pid no longer exists) are swept on the next
//! create. Needs root and iproute2.

use std::path::Path;

use quorumgate_testkit::netns::ip;
use quorumgate_testkit::Topology;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_cleans_up_and_create_sweeps_orphans() {
    // A name in the kit's scheme with a pid that cannot exist (above pid_max's 2^22 limit).
    let orphan = "qgk-7ffffff-orphan0h";
    let _ = ip(&["netns", "add", orphan]);
    assert!(
        Path::new("/run/netns").join(orphan).exists(),
        "setup: ip netns add"
    );

    let topo = Topology::create("life", &["a"]).expect("topology (root + iproute2)");
    assert!(
        !Path::new("/run/netns").join(orphan).exists(),
        "the orphaned namespace was not swept"
    );
    let names = [
        topo.hub_ns().name().to_owned(),
        topo.region_ns(0).name().to_owned(),
    ];
    // A process inside the region: it must not survive the topology.
    let mut child = topo
        .region_ns(0)
        .command("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep in the namespace");
    let pid = child.id().expect("pid");
    assert_eq!(
        topo.region_ns(0).pids(),
        vec![i32::try_from(pid).expect("pid")]
    );
    drop(topo);
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
        .await
        .expect("the process in the namespace was not killed")
        .expect("wait");
    assert!(!status.success(), "killed, not exited: {status}");
    for n in names {
        assert!(
            !Path::new("/run/netns").join(&n).exists(),
            "{n} still exists"
        );
    }
}
