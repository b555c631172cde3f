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
        // C shims over the system OpenSSL 3, liblz4 and libxxhash (macros and variadics that Swift cannot import).
        .target(
            name: "CUnderstudyShims",
            // The byte loops here sit on the checkpoint path: optimise them even in debug builds.
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto"), .linkedLibrary("lz4"), .linkedLibrary("xxhash")]
        ),
        // The preload library (C, no Swift): see Sources/CUnderstudyPreload/preload.c.
        .target(name: "CUnderstudyPreload", cSettings: [.unsafeFlags(["-O2"])]),
        // The system base: TCP and unix sockets, dedicated threads, blocking queues, host commands,
        // network namespaces, Duration and percentile helpers.
        .target(name: "UnderstudySystem", dependencies: ["CUnderstudyShims"]),
        // Pure protocol: frames, messages, page codec, epoch digest, state machines. No I/O.
        .target(name: "UnderstudyProtocol", dependencies: ["UnderstudySystem", "CUnderstudyShims"]),
        // TLS 1.3 with mutual authentication, framed connections, certificate authority.
        .target(
            name: "UnderstudyTransport",
            dependencies: ["UnderstudySystem", "UnderstudyProtocol", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // Backup-side replica: memory image, device state, committed epoch, crash-safe apply.
        .target(
            name: "UnderstudyReplica",
            dependencies: ["UnderstudyProtocol", "UnderstudyDisk", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // The QEMU driver: launch, QMP, guest RAM, dirty tracking, device state, the checkpoint source.
        .target(
            name: "UnderstudyQEMU",
            dependencies: ["UnderstudyProtocol", "UnderstudySystem", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // Disk replication: an NBD server for the guest disk that reports every write, per-epoch capture.
        .target(
            name: "UnderstudyDisk",
            dependencies: ["UnderstudyProtocol", "UnderstudySystem", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // The output gate: guest NIC frames (QEMU -netdev stream) held per epoch until acknowledged, then sent to a TAP.
        .target(
            name: "UnderstudyNetwork",
            dependencies: ["UnderstudyProtocol", "UnderstudySystem", "CUnderstudyShims", .product(name: "Logging", package: "swift-log")]
        ),
        // Fencing through an etcd witness: the lease on /understudy/<vm>/active that lets a node act.
        .target(
            name: "UnderstudyWitness",
            dependencies: ["UnderstudySystem", "UnderstudyTransport", .product(name: "Logging", package: "swift-log")]
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
        // What the demo, the benchmarks and the tests share: the test guest, the pair network, the counter
        // client, the agent pair, the link emulator, the synthetic guest and run, etcd, helpers for processes.
        .target(
            name: "UnderstudyHarness",
            dependencies: [
                "UnderstudyAgent", "UnderstudyProtocol", "UnderstudySystem", "UnderstudyTransport", "UnderstudyReplica",
                "UnderstudyQEMU", "UnderstudyWitness", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `understudy import`: a libvirt domain or an OVF/OVA appliance made into a pair's configuration.
        .target(name: "UnderstudyImport", dependencies: ["UnderstudyAgent", "UnderstudyQEMU", "UnderstudyProtocol", "UnderstudySystem"]),
        .executableTarget(
            name: "understudy",
            dependencies: [
                "UnderstudyAgent", "UnderstudyHarness", "UnderstudyTransport", "UnderstudyImport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "UnderstudyBench",
            dependencies: ["UnderstudyAgent", "UnderstudyHarness", "UnderstudyNetwork", "UnderstudyProtocol", "UnderstudySystem", "UnderstudyTransport",
                           "UnderstudyQEMU"],
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
        // The tags that sort the test suites (`vm`: the suite starts QEMU).
        .target(name: "UnderstudyTestTags", path: "Tests/UnderstudyTestTags"),
        .testTarget(
            name: "UnderstudyQEMUTests",
            dependencies: ["UnderstudyTestTags", "UnderstudySystem", "UnderstudyQEMU", "UnderstudyHarness", "DirtyTrackingHelper"]
        ),
        .testTarget(
            name: "UnderstudyProtocolTests",
            dependencies: ["UnderstudyProtocol", .product(name: "PropertyBased", package: "swift-property-based")]
        ),
        .testTarget(name: "UnderstudySystemTests", dependencies: ["UnderstudySystem", "UnderstudyHarness"]),
        .testTarget(name: "UnderstudyImportTests", dependencies: ["UnderstudyImport", "UnderstudyAgent", "UnderstudyHarness", "UnderstudyQEMU", "UnderstudySystem", "understudy"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "UnderstudyHarnessTests", dependencies: ["UnderstudyHarness", "UnderstudySystem"]),
        .testTarget(
            name: "UnderstudyTransportTests",
            dependencies: ["UnderstudyTransport", "UnderstudySystem", "UnderstudyProtocol", "CUnderstudyShims", "UnderstudyHarness"]
        ),
        .testTarget(
            name: "UnderstudyReplicaTests",
            dependencies: ["UnderstudySystem", "UnderstudyReplica", "UnderstudyProtocol", "UnderstudyHarness", "ReplicaCrashHelper"]
        ),
        .testTarget(
            name: "UnderstudyDiskTests",
            dependencies: ["UnderstudyTestTags", "UnderstudySystem", "UnderstudyDisk", "UnderstudyProtocol", "UnderstudyTransport", "UnderstudyHarness"]
        ),
        .testTarget(
            name: "UnderstudyNetworkTests",
            dependencies: ["UnderstudyTestTags", "UnderstudySystem", "UnderstudyNetwork", "UnderstudyProtocol", "UnderstudyTransport", "UnderstudyHarness"]
        ),
        .testTarget(
            name: "UnderstudyWitnessTests",
            dependencies: ["UnderstudySystem", "UnderstudyWitness", "UnderstudyTransport", "UnderstudyHarness"]
        ),
        .testTarget(
            name: "UnderstudyAgentTests",
            dependencies: ["UnderstudyTestTags", "UnderstudyAgent", "UnderstudyTransport", "UnderstudySystem", "UnderstudyReplica", "UnderstudyQEMU", "UnderstudyHarness",
                           "understudy"]
        ),
    ]
)

// The libFuzzer targets (Fuzz/): only in the manifest when Bench/fuzz.sh builds them with
// `--sanitize fuzzer`, so that the ordinary build and test never compile or link them.
if Context.environment["UNDERSTUDY_FUZZ"] == "1" {
    package.targets.append(
        .executableTarget(
            name: "UnderstudyFuzz",
            dependencies: ["UnderstudyAgent", "UnderstudyProtocol", "UnderstudyDisk", "UnderstudyNetwork", "UnderstudyReplica", "UnderstudyWitness",
                           "UnderstudyQEMU", "UnderstudyImport"],
            path: "Fuzz/UnderstudyFuzz",
            // libFuzzer supplies `main`; the targets only export LLVMFuzzerTestOneInput.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    )
}
