import Foundation
import Testing
import UnderstudyHarness

@Suite("TOMLText")
struct TOMLTextTests {
    let file = """
        # Written by understudy import
        [node]
        name = "host-a"                      # this node's certificate name
        state_dir = "/var/lib/understudy/db"

        [vm]
        id = "db"
        disks = ["/a.img", "/b.img"]         # raw, in guest order

        [failover]
        automatic = true
        # EDIT: a witness
        # [witness]

        """

    @Test("a key's line is replaced in its own table only, its comment gone with the old value")
    func replaces() {
        var text = TOMLText(file)
        text.set("name", in: "node", to: "\"primary\"")
        text.set("disks", in: "vm", to: "[\"/c.img\"]")
        #expect(text.text == file.replacingOccurrences(of: "name = \"host-a\"                      # this node's certificate name", with: "name = \"primary\"")
            .replacingOccurrences(of: "disks = [\"/a.img\", \"/b.img\"]         # raw, in guest order", with: "disks = [\"/c.img\"]"))
    }

    @Test("a missing key goes after its table's last entry, before the blank lines and comments that follow")
    func adds() {
        var text = TOMLText(file)
        text.set("run_dir", in: "vm", to: "\"/run/p\"")
        text.set("without_witness", in: "failover", to: "true")
        #expect(text.text.contains("disks = [\"/a.img\", \"/b.img\"]         # raw, in guest order\nrun_dir = \"/run/p\"\n\n[failover]"))
        #expect(text.text.contains("automatic = true\nwithout_witness = true\n# EDIT: a witness"))
    }

    @Test("a missing table is added at the end; a key named like another table's is not touched")
    func addsTable() {
        var text = TOMLText(file)
        text.set("interval_ms", in: "heartbeat", to: "100")
        text.set("id", in: "node", to: "\"x\"")
        #expect(text.text.hasSuffix("# [witness]\n\n[heartbeat]\ninterval_ms = 100\n"))
        #expect(text.text.contains("id = \"db\""))
        #expect(text.text.contains("state_dir = \"/var/lib/understudy/db\"\nid = \"x\"\n\n[vm]"))
    }
}
