import ArgumentParser
import Foundation
import UnderstudyImport

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Make the pair's configuration for a VM you already run: from libvirt, or from an OVF/OVA appliance.",
        discussion: """
            Writes primary.toml, backup.toml and import-report.txt into --out, and prints the report: what was \
            taken over, what changes and why (an e1000 NIC becomes virtio-net, graphics are left out), and what \
            blocks protection (passthrough, shared disks, CD-ROMs, host-local sockets...). When anything blocks, \
            nothing but the report is written and the exit status is 1. Raw disks are used in place; other \
            formats are converted to raw in --out with qemu-img, and only with --convert-disks. \
            See docs/OPERATIONS.md, Protecting an existing VM.
            """,
        subcommands: [Libvirt.self, OVF.self])

    struct Libvirt: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "libvirt", abstract: "Import a libvirt domain (virsh dumpxml DOMAIN > DOMAIN.xml).")

        @Argument(help: "The domain's XML.")
        var domain: String

        @OptionGroup var options: ImportCommandOptions

        func run() throws {
            try options.report { options throws(ImportError) in try VMImporter.importLibvirt(file: domain, options: options) }
        }
    }

    struct OVF: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ovf", abstract: "Import an OVF appliance: an .ova archive, or an .ovf envelope with its files beside it.")

        @Argument(help: "The .ova or .ovf file.")
        var file: String

        @OptionGroup var options: ImportCommandOptions

        func run() throws {
            try options.report { options throws(ImportError) in try VMImporter.importOVF(file: file, options: options) }
        }
    }
}

/// The options both import commands take.
struct ImportCommandOptions: ParsableArguments {
    @Option(name: .long, help: "The directory to write into (created if needed); converted disks go here too.")
    var out: String

    @Flag(name: .long, help: "Convert qcow2, VMDK and other non-raw images (and block devices) to raw files in --out.")
    var convertDisks = false

    @Option(name: .long, help: "The VM id (default: from the source's name).")
    var id: String?

    @Option(name: .long, help: "The certificate name of the node that runs the VM first.")
    var primaryNode = "host-a"

    @Option(name: .long, help: "The certificate name of the node that keeps the replica first.")
    var backupNode = "host-b"

    @Option(name: .long, help: "The primary node's address on the replication link (default: a placeholder marked EDIT).")
    var primaryHost: String?

    @Option(name: .long, help: "The backup node's address on the replication link (default: a placeholder marked EDIT).")
    var backupHost: String?

    @Option(name: .long, help: "An etcd endpoint of the witness, HOST:PORT (repeat for several).")
    var witness: [String] = []

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        guard primaryNode != backupNode else { throw ValidationError("--primary-node and --backup-node must differ") }
        // Certificate names: they also appear in the files' comments and the report.
        for (option, name) in [("--primary-node", primaryNode), ("--backup-node", backupNode)]
        where name.isEmpty || !name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0)) }) {
            throw ValidationError("\(option) \(name.debugDescription): a node name is letters, digits, '.', '_' or '-'")
        }
    }

    /// Runs `body` with these options and prints its report; exit status 1 when refused or failed.
    func report(_ body: (ImportOptions) throws(ImportError) -> ImportReport) throws {
        var options = ImportOptions(outDirectory: URL(fileURLWithPath: out).standardizedFileURL.path)
        options.convertDisks = convertDisks
        options.id = id
        options.primaryNode = primaryNode
        options.backupNode = backupNode
        options.primaryHost = primaryHost
        options.backupHost = backupHost
        options.witness = witness
        let report: ImportReport
        do {
            report = try body(options)
        } catch {
            FileHandle.standardError.write(Data("understudy import: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.text, terminator: "")
        }
        if !report.protectable { throw ExitCode(1) }
    }
}
