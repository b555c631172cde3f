import Testing
@testable import UnderstudyImport

@Suite("XML reader")
struct MarkupParserTests {
    @Test func readsElementsAttributesTextAndEntities() throws {
        let root = try MarkupParser.parse(Array("""
            <?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment before the root -->
            <domain type='kvm' xmlns:q="urn:x">
              <name>a &amp; b &lt;&#x41;&#66;&gt;</name>
              <q:cmdline><![CDATA[console=ttyS0 <raw>]]></q:cmdline>
              <empty   attribute = "quoted &quot;value&quot;" />
            </domain>
            """.utf8))
        #expect(root.name == "domain")
        #expect(root.attribute("type") == "kvm")
        #expect(root.child("name")?.text == "a & b <AB>")
        #expect(root.child("cmdline")?.text == "console=ttyS0 <raw>")
        #expect(root.child("cmdline")?.name == "q:cmdline")
        #expect(root.child("empty")?.attribute("attribute") == "quoted \"value\"")
        #expect(root.child("empty")?.line == 6)
    }

    @Test(arguments: [
        ("<a><b></a>", "</a> closes <b>"),
        ("<a x='1' x='2'/>", "appears twice"),
        ("<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><a>&e;</a>", "document type declaration"),
        ("<a/><b/>", "content after the root"),
        ("<a>", "end of file inside <a>"),
        ("<a>&bogus;</a>", "unknown entity"),
        ("<a x=1/>", "must be quoted"),
        ("", "expected the root element"),
        ("<a><!-- never closed </a>", "unterminated comment"),
        ("<a>\u{1}</a>", "control character"),
    ])
    func refusesMalformedDocuments(text: String, message: String) {
        #expect {
            try MarkupParser.parse(Array(text.utf8))
        } throws: { error in
            (error as? MarkupError)?.message.contains(message) == true
        }
    }

    @Test func reportsTheLineOfAnError() {
        #expect(throws: MarkupError(line: 3, "</b> closes <c> (opened on line 3)")) {
            try MarkupParser.parse(Array("<a>\n<b>\n<c></b></a>".utf8))
        }
    }

    @Test func boundsNestingDepthAndAttributes() {
        let deep = String(repeating: "<a>", count: MarkupParser.maximumDepth + 1) + String(repeating: "</a>", count: MarkupParser.maximumDepth + 1)
        #expect(throws: MarkupError.self) { try MarkupParser.parse(Array(deep.utf8)) }
        let wide = "<a " + (0...MarkupParser.maximumAttributes).map { "x\($0)='1'" }.joined(separator: " ") + "/>"
        #expect(throws: MarkupError(line: 1, "more than \(MarkupParser.maximumAttributes) attributes in <a>")) { try MarkupParser.parse(Array(wide.utf8)) }
    }
}
