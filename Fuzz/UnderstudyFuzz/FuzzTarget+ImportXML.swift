import Foundation
import UnderstudyAgent
import UnderstudyImport

extension FuzzTarget {
    /// A libvirt domain file or an OVF envelope (`understudy import`): read by the strict XML
    /// reader, mapped to a plan, resolved as if every image were there, and, when nothing blocks,
    /// written as the pair's two files, which must parse as TOML and name the plan's id and disks:
    /// no string from the input may break out of its quotes.
    static let importXML = FuzzTarget(name: "import-xml", run: { bytes in
        guard let root = try? MarkupParser.parse(bytes) else { return }
        let plan: ImportPlan
        switch root.localName {
        case "domain": guard let parsed = try? LibvirtDomainImport.plan(xml: bytes) else { return }; plan = parsed
        case "Envelope": guard let parsed = try? OVFEnvelopeImport.plan(xml: bytes) else { return }; plan = parsed
        default: return
        }
        var options = ImportOptions(outDirectory: "/fuzz/out")
        options.convertDisks = true
        let facts = ImportFacts(images: Dictionary(plan.disks.map { ($0.source, ImportFacts.Image(virtualSize: 1 << 20)) }, uniquingKeysWith: { first, _ in first }),
                                existingPaths: Set([plan.kernel, plan.initrd, plan.uefiVarsSource, options.uefiVarsTemplate].compactMap { $0 }))
        let resolved = plan.resolved(facts: facts, options: options)
        _ = ImportReport(source: "fuzz.xml", plan: resolved, written: [], options: options).text
        guard resolved.isProtectable else { return }
        for node in [PairConfiguration.Node.primary, .backup] {
            let text = PairConfiguration(plan: resolved, options: options).text(for: node)
            guard let document = try? TOMLDocument(parsing: text, source: "fuzz.toml") else { fatalError("the written configuration does not parse:\n\(text)") }
            let disks = resolved.disks.compactMap(\.output)
            let written = disks.count == 1 ? (try? document.string("vm.disk_image")).flatMap { $0.map { [$0] } } : try? document.strings("vm.disks")
            guard (try? document.string("vm.id")) == resolved.id, disks.isEmpty || written == disks else {
                fatalError("the written configuration does not name the plan's id and disks:\n\(text)")
            }
        }
    }, seeds: {
        // The domain files and envelopes of the import tests.
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Tests/UnderstudyImportTests/Fixtures").standardized
        let files = (try? FileManager.default.contentsOfDirectory(at: fixtures, includingPropertiesForKeys: nil))?.sorted { $0.path < $1.path } ?? []
        return files.compactMap { try? Array(Data(contentsOf: $0)) }
    })
}
