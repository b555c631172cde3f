import Foundation
import Testing
import UnderstudyHarness
import UnderstudySystem

/// `understudy import` as the operator runs it: exit status, printed report, --json.
@Suite("understudy import command line")
struct ImportCommandLineTests {
    func understudy(_ arguments: [String]) throws -> HostCommand.Output {
        try HostCommand.execute(productsDirectory().appendingPathComponent("understudy").path, arguments)
    }

    @Test func aRefusedImportExitsOneAndPrintsTheBlockersAlsoAsJSON() throws {
        try withTemporaryDirectory("import-cli-refused") { directory in
            let domain = "\(Fixtures.directory)/unsupported-devices.xml"
            let text = try understudy(["import", "libvirt", domain, "--out", "\(directory)/out"])
            #expect(text.status == 1)
            #expect(text.stdout.contains("REFUSED: 9 things block protection") && text.stdout.contains("hostdev pci"), "\(text.stdout)")
            let json = try understudy(["import", "libvirt", domain, "--out", "\(directory)/out", "--json"])
            #expect(json.status == 1)
            let report = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect(report?["protectable"] as? Bool == false)
            #expect(((report?["plan"] as? [String: Any])?["blockers"] as? [Any])?.count == 9)
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory)/out") == ["import-report.txt"])
        }
    }

    @Test func aRawDomainImportsWithExitZero() throws {
        try withTemporaryDirectory("import-cli-raw") { directory in
            try HostCommand.run(["truncate", "-s", "16M", "\(directory)/disk.raw"])
            try VMImporterTests.domain(disk: "\(directory)/disk.raw", format: "raw").write(toFile: "\(directory)/web-1.xml", atomically: true, encoding: .utf8)
            let result = try understudy(["import", "libvirt", "\(directory)/web-1.xml", "--out", "\(directory)/out", "--primary-host", "10.0.0.1",
                                         "--backup-host", "10.0.0.2", "--id", "web-one"])
            #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
            #expect(result.stdout.contains("ready to protect") && result.stdout.contains("truncate -s 16777216 '\(directory)/disk.raw'"), "\(result.stdout)")
            let primary = try String(contentsOfFile: "\(directory)/out/primary.toml", encoding: .utf8)
            #expect(primary.contains("id = \"web-one\"") && primary.contains("address = \"10.0.0.2:7400\""))
            let bad = try understudy(["import", "libvirt", "\(directory)/web-1.xml", "--out", "\(directory)/other", "--primary-node", "a", "--backup-node", "a"])
            #expect(bad.status != 0 && bad.stderr.contains("must differ"))
        }
    }
}
