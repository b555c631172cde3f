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

        @OptionGroup var authority: CertificateAuthorityOptions

        @Option(name: .long, help: "Comma-separated node names, e.g. a,b.")
        var nodes: String

        func run() throws {
            let names = nodes.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            do {
                let written = try CertificateAuthority.initialize(directory: authority.dir, nodes: names, validDays: authority.days)
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

        @OptionGroup var authority: CertificateAuthorityOptions

        @Option(name: .long, help: "The new node's name.")
        var node: String

        func run() throws {
            do {
                for path in try CertificateAuthority.add(directory: authority.dir, node: node, validDays: authority.days) { print("wrote \(path)") }
            } catch {
                throw ValidationError("\(error)")
            }
        }
    }
}
