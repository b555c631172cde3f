// swift-tools-version: 6.1
import PackageDescription

/// Understudy: Remus-style fault-tolerant VM replication.
/// One module per layer; the data path runs Protocol → Transport → Replica → Agent → CLI.
let package = Package(
    name: "Understudy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "understudy", targets: ["understudy"]),
        .executable(name: "understudy-bench", targets: ["UnderstudyBench"]),
        // Loaded into QEMU with LD_PRELOAD to arm userfaultfd write tracking of guest RAM.
        .library(name: "UnderstudyPreload", type: .dynamic, targets: ["CUnderstudyPreload"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // C shims over the system OpenSSL 3 and liblz4 (macros and variadics that Swift cannot import).
        .target(
            name: "CUnderstudyShims",
            // The byte loops here sit on the checkpoint path: optimise them even in debug builds.
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto"), .linkedLibrary("lz4")]
        ),
        // The preload library (C, no Swift): see Sources/CUnderstudyPreload/preload.c.
        .target(name: "CUnderstudyPreload", cSettings: [.unsafeFlags(["-O2"])]),
        // Pure protocol: frames, messages, page codec, epoch digest, state machines. No I/O.
        .target(name: "UnderstudyProtocol", dependencies: ["CUnderstudyShims"]),
        // Sockets, TLS 1.3 with mutual authentication, framed connections, certificate authority.
        .target(
            name: "UnderstudyTransport",
            dependencies: ["UnderstudyProtocol", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // Backup-side replica: memory image, device state, committed epoch, crash-safe apply.
        .target(
            name: "UnderstudyReplica",
            dependencies: ["UnderstudyProtocol", "UnderstudyDisk", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // The QEMU driver: launch, QMP, guest RAM, dirty tracking, device state, the checkpoint source.
        .target(
            name: "UnderstudyQEMU",
            dependencies: ["UnderstudyProtocol", "UnderstudyTransport", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // Disk replication: an NBD server for the guest disk that reports every write, per-epoch capture.
        .target(
            name: "UnderstudyDisk",
            dependencies: ["UnderstudyProtocol", "UnderstudyTransport", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // The output gate: guest NIC frames (QEMU -netdev stream) held per epoch until acknowledged, then sent to a TAP.
        .target(
            name: "UnderstudyNetwork",
            dependencies: ["UnderstudyProtocol", "UnderstudyTransport", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // Fencing through an etcd witness: the lease on /understudy/<vm>/active that lets a node act.
        .target(
            name: "UnderstudyWitness",
            dependencies: ["UnderstudyTransport", .product(name: "Logging", package: "swift-log")]
        ),
        // Primary and backup roles wired from the layers below.
        .target(
            name: "UnderstudyAgent",
            dependencies: [
                "UnderstudyProtocol", "UnderstudyTransport", "UnderstudyReplica", "UnderstudyQEMU", "UnderstudyDisk",
                "UnderstudyNetwork", "UnderstudyWitness", "CUnderstudyShims", .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "understudy",
            dependencies: [
                "UnderstudyAgent", "UnderstudyTransport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "UnderstudyBench",
            dependencies: ["UnderstudyAgent", "UnderstudyProtocol", "UnderstudyTransport", "UnderstudyQEMU", "UnderstudyTestSupport"],
            path: "Bench/UnderstudyBench"
        ),
        // Applies epochs to a replica in a loop so that tests can SIGKILL it mid-apply.
        .executableTarget(
            name: "ReplicaCrashHelper",
            dependencies: ["UnderstudyReplica", "UnderstudyProtocol"],
            path: "Tests/ReplicaCrashHelper"
        ),
        // Maps a file and writes pages on command, standing in for QEMU in dirty-tracking tests.
        .executableTarget(name: "DirtyTrackingHelper", path: "Tests/DirtyTrackingHelper"),
        // Shared by the test targets: the test guest (kernel + counter initramfs), build products.
        .target(
            name: "UnderstudyTestSupport",
            dependencies: ["UnderstudyQEMU", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")],
            path: "Tests/UnderstudyTestSupport"
        ),
        .testTarget(
            name: "UnderstudyQEMUTests",
            dependencies: ["UnderstudyQEMU", "UnderstudyTestSupport", "DirtyTrackingHelper"]
        ),
        .testTarget(
            name: "UnderstudyProtocolTests",
            dependencies: ["UnderstudyProtocol", .product(name: "PropertyBased", package: "swift-property-based")]
        ),
        .testTarget(
            name: "UnderstudyTransportTests",
            dependencies: ["UnderstudyTransport", "UnderstudyProtocol", "CUnderstudyShims"]
        ),
        .testTarget(
            name: "UnderstudyReplicaTests",
            dependencies: ["UnderstudyReplica", "UnderstudyProtocol", "UnderstudyTestSupport", "ReplicaCrashHelper"]
        ),
        .testTarget(
            name: "UnderstudyDiskTests",
            dependencies: ["UnderstudyDisk", "UnderstudyProtocol", "UnderstudyTransport", "UnderstudyTestSupport"]
        ),
        .testTarget(
            name: "UnderstudyNetworkTests",
            dependencies: ["UnderstudyNetwork", "UnderstudyProtocol", "UnderstudyTransport", "UnderstudyTestSupport"]
        ),
        .testTarget(
            name: "UnderstudyWitnessTests",
            dependencies: ["UnderstudyWitness", "UnderstudyTransport", "UnderstudyTestSupport"]
        ),
        .testTarget(
            name: "UnderstudyAgentTests",
            dependencies: ["UnderstudyAgent", "UnderstudyTransport", "UnderstudyReplica", "UnderstudyQEMU", "UnderstudyTestSupport",
                           "understudy"]
        ),
    ]
)
