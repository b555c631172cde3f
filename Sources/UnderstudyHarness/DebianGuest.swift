import Foundation
import UnderstudySystem

/// The Debian 12 benchmark guest that Deploy/guest/build-debian.sh builds once into a cache
/// (Deploy/guest/README.md): systemd, PostgreSQL 15 with a `bench` database (`pgbench -i -s 5`),
/// the cloud kernel booted directly with the root file system on the guest's whole disk, a static
/// address in `PairNetwork`'s subnet. Its build tree doubles as the clients' file system: pgbench,
/// psql and pg_isready run from it with chroot inside the client's namespace, so the host needs
/// nothing more.
///
/// A run boots a copy of `rootImage` (`copyRootDisk`), never the cached image itself.
public struct DebianGuest: Sendable {
    /// The cache directory: `tree/`, `root.img`, `vmlinuz`, `initrd.img`, and `ready` (written last).
    public let directory: String

    public static let memoryMiB = 1024
    public static let postgresPort: UInt16 = 5432
    public static let database = "bench"
    /// The role the clients connect as (the guest trusts `PairNetwork`'s subnet).
    public static let user = "postgres"
    /// The address build-debian.sh gives the guest: `PairNetwork.guestAddress`.
    public static let address = "10.77.0.2"
    /// Root on the whole virtio disk (no partition table); the agent adds `console=ttyS0`.
    public static let commandLine = "root=/dev/vda rw quiet"

    /// `UNDERSTUDY_DEBIAN_DIR`, or /var/cache/understudy/debian (the script's default).
    public init(directory: String = ProcessInfo.processInfo.environment["UNDERSTUDY_DEBIAN_DIR"] ?? "/var/cache/understudy/debian") {
        self.directory = directory
    }

    public var tree: String { "\(directory)/tree" }
    public var rootImage: String { "\(directory)/root.img" }
    public var kernel: String { "\(directory)/vmlinuz" }
    public var initrd: String { "\(directory)/initrd.img" }

    /// The build finished: its stamp exists, and so do the files a boot needs.
    public var isBuilt: Bool {
        ["\(directory)/ready", rootImage, kernel, initrd, "\(tree)/usr/lib/postgresql/15/bin/pgbench"]
            .allSatisfy { FileManager.default.fileExists(atPath: $0) }
    }

    /// Throws with what to run when the image is not built.
    public func requireBuilt() throws {
        guard isBuilt else {
            throw HarnessError("no Debian guest in \(directory): build it once with sudo Deploy/guest/build-debian.sh (a few minutes)")
        }
    }

    /// Copies the root disk to `path`, keeping it sparse: a run's guest writes to its own copy.
    public func copyRootDisk(to path: String) throws {
        try HostCommand.run(["cp", "--sparse=always", rootImage, path])
    }

    /// The command that runs `arguments` (a program of the tree, by its path there) chrooted in
    /// the tree, inside network namespace `namespace`.
    public func treeCommand(namespace: String, _ arguments: [String]) -> [String] {
        ["ip", "netns", "exec", namespace, "chroot", tree] + arguments
    }

    /// A PostgreSQL 15 client program's path in the tree.
    public static func clientProgram(_ name: String) -> String { "/usr/lib/postgresql/15/bin/\(name)" }

    /// Waits until PostgreSQL in the guest accepts connections to the bench database from
    /// `namespace` (pg_isready); throws after `timeout` or when `failed` returns a reason.
    public func waitUntilPostgresAnswers(namespace: String, timeout: Duration, failed: () -> String? = { nil }) throws {
        let deadline = ContinuousClock.now + timeout
        let probe = treeCommand(namespace: namespace, [Self.clientProgram("pg_isready"), "-h", Self.address, "-p", "\(Self.postgresPort)",
                                                       "-U", Self.user, "-d", Self.database, "-t", "2"])
        while true {
            if let reason = failed() { throw HarnessError("waiting for PostgreSQL in the guest: \(reason)") }
            if let answer = try? HostCommand.execute("/usr/bin/env", probe, timeout: .seconds(10)), answer.status == 0 { return }
            guard ContinuousClock.now < deadline else { throw HarnessError("PostgreSQL in the guest did not answer within \(timeout)") }
            Thread.sleep(forTimeInterval: 0.5)
        }
    }
}
