import ArgumentParser
import UnderstudyTransport

struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs", abstract: "Manage the certificates a replication pair authenticates with.",
        subcommands: [Init.self, Add.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create a private CA and a key and certificate for each node.",
            discussion: """
                Writes ca.pem and ca.key, and NODE.pem and NODE.key for each node, into the directory. \
                Keys are EC P-256 with mode 0600. Each node certificate names the node, which is the \
                name its peer expects. Copy ca.pem and a node's own pair to that node; keep ca.key offline.
                """)

        @Option(name: .long, help: "Directory to write into (created with mode 0700).")
        var dir: String

        @Option(name: .long, help: "Comma-separated node names, e.g. a,b.")
        var nodes: String

        @Option(name: .long, help: "Validity of the node certificates in days.")
        var days: Int = CertificateAuthority.defaultValidDays

        func validate() throws {
            guard days > 0 && days <= 36500 else { throw ValidationError("--days must be between 1 and 36500") }
        }

        func run() throws {
            let names = nodes.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            do {
                let written = try CertificateAuthority.initialize(directory: dir, nodes: names, validDays: days)
                for path in written { print("wrote \(path)") }
            } catch {
                throw ValidationError("\(error)")
            }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Issue one more node's key and certificate from an existing CA.",
            discussion: """
                Reads ca.pem and ca.key in the directory (made by `certs init`) and writes NODE.pem \
                and NODE.key: a host joining the fleet, such as a spare, whose name the others then \
                trust. Refuses a name already there.
                """)

        @Option(name: .long, help: "The directory of `certs init` (ca.pem and ca.key).")
        var dir: String

        @Option(name: .long, help: "The new node's name.")
        var node: String

        @Option(name: .long, help: "Validity of the certificate in days.")
        var days: Int = CertificateAuthority.defaultValidDays

        func validate() throws {
            guard days > 0 && days <= 36500 else { throw ValidationError("--days must be between 1 and 36500") }
        }

        func run() throws {
            do {
                for path in try CertificateAuthority.add(directory: dir, node: node, validDays: days) { print("wrote \(path)") }
            } catch {
                throw ValidationError("\(error)")
            }
        }
    }
}
