import Foundation

/// One element of an XML document as `MarkupParser` read it: enough of XML for libvirt domain
/// files and OVF envelopes (names, attributes, nested elements, text), and nothing that reaches
/// outside the document.
///
/// Names keep their namespace prefix (`rasd:ResourceType`); lookups go by the local name, because
/// OVF files differ in the prefixes they bind (and some bind the envelope's as the default).
public struct MarkupElement: Sendable, Equatable {
    public var name: String
    /// In document order; a name appears at most once (the parser refuses duplicates).
    public var attributes: [(name: String, value: String)]
    public var children: [MarkupElement]
    /// The text directly inside this element (not inside its children), entities replaced.
    public var text: String
    /// Where the element starts, for messages that point the operator at it.
    public var line: Int

    public init(name: String, attributes: [(name: String, value: String)] = [], children: [MarkupElement] = [], text: String = "", line: Int = 1) {
        self.name = name
        self.attributes = attributes
        self.children = children
        self.text = text
        self.line = line
    }

    /// The name without its namespace prefix.
    public var localName: Substring { Self.local(name) }

    /// The value of the attribute whose local name is `localName`.
    public func attribute(_ localName: String) -> String? {
        attributes.first { Self.local($0.name) == localName }?.value
    }

    /// The first child element with this local name.
    public func child(_ localName: String) -> MarkupElement? { children.first { $0.localName == localName } }

    /// Every child element with this local name, in document order.
    public func children(_ localName: String) -> [MarkupElement] { children.filter { $0.localName == localName } }

    /// The text with surrounding white space removed.
    public var trimmedText: String { text.trimmingCharacters(in: .whitespacesAndNewlines) }

    public static func == (a: MarkupElement, b: MarkupElement) -> Bool {
        a.name == b.name && a.attributes.elementsEqual(b.attributes) { $0.name == $1.name && $0.value == $1.value }
            && a.children == b.children && a.text == b.text && a.line == b.line
    }

    private static func local(_ name: String) -> Substring {
        name.firstIndex(of: ":").map { name[name.index(after: $0)...] } ?? Substring(name)
    }
}
