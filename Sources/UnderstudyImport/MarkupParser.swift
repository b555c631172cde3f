/// A strict reader of the XML that `virsh dumpxml` and OVF tools write: elements, attributes,
/// text, CDATA, comments, processing instructions, the five predefined entities and character
/// references. A document type declaration is refused, so no entity can expand or reach a file,
/// and so is anything malformed (a mismatched end tag, a repeated attribute), with its line:
/// a configuration is never built from a guess about a broken file.
///
/// (FoundationXML links here, but on Linux it parses in libxml2's recovery mode: it accepts
/// `<a><b></a>` and repeated attributes without an error, and prints libxml2's messages.)
public struct MarkupParser {
    /// Bounds that keep a hostile file from costing more than a few megabytes.
    public static let maximumBytes = 16 << 20
    public static let maximumDepth = 64
    public static let maximumElements = 200_000
    public static let maximumAttributes = 256

    private let bytes: [UInt8]
    private var position = 0
    private var line = 1
    private var elements = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The document's root element.
    public static func parse(_ bytes: [UInt8]) throws(MarkupError) -> MarkupElement {
        guard bytes.count <= maximumBytes else { throw MarkupError(line: 1, "the document has \(bytes.count) bytes; at most \(maximumBytes) are read") }
        var parser = MarkupParser(bytes)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { parser.position = 3 }
        try parser.skipMisc()
        guard parser.peek() == UInt8(ascii: "<") else { throw parser.error("expected the root element") }
        let root = try parser.element(depth: 1)
        try parser.skipMisc()
        guard parser.position == bytes.count else { throw parser.error("content after the root element") }
        return root
    }

    // MARK: - Structure

    /// White space, comments and processing instructions (the XML declaration among them).
    private mutating func skipMisc() throws(MarkupError) {
        while true {
            skipSpace()
            if starts("<?") {
                try skip(past: "?>", what: "processing instruction")
            } else if starts("<!--") {
                try skip(past: "-->", what: "comment")
            } else if starts("<!DOCTYPE") || starts("<!doctype") {
                throw error("a document type declaration is not accepted (entities could expand or read files)")
            } else {
                return
            }
        }
    }

    private mutating func element(depth: Int) throws(MarkupError) -> MarkupElement {
        guard depth <= Self.maximumDepth else { throw error("elements nested deeper than \(Self.maximumDepth)") }
        elements += 1
        guard elements <= Self.maximumElements else { throw error("more than \(Self.maximumElements) elements") }
        let startLine = line
        position += 1  // "<"
        let name = try self.name()
        var element = MarkupElement(name: name, line: startLine)
        while true {
            let hadSpace = skipSpace()
            guard let byte = peek() else { throw error("end of file inside the tag <\(name)>") }
            if byte == UInt8(ascii: "/") {
                position += 1
                guard peek() == UInt8(ascii: ">") else { throw error("expected '>' after '/' in <\(name)>") }
                position += 1
                return element
            }
            if byte == UInt8(ascii: ">") {
                position += 1
                break
            }
            guard hadSpace else { throw error("expected white space before an attribute in <\(name)>") }
            let attribute = try self.name()
            skipSpace()
            guard peek() == UInt8(ascii: "=") else { throw error("expected '=' after the attribute \(attribute) in <\(name)>") }
            position += 1
            skipSpace()
            guard let quote = peek(), quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else {
                throw error("the value of \(attribute) in <\(name)> must be quoted")
            }
            position += 1
            let value = try characterData(until: quote, what: "attribute value")
            position += 1
            guard element.attribute(exactly: attribute) == nil else { throw error("the attribute \(attribute) appears twice in <\(name)>") }
            guard element.attributes.count < Self.maximumAttributes else { throw error("more than \(Self.maximumAttributes) attributes in <\(name)>") }
            element.attributes.append((attribute, value))
        }
        // Content, up to the matching end tag.
        while true {
            guard peek() != nil else { throw error("end of file inside <\(name)> (opened on line \(startLine))") }
            if starts("</") {
                position += 2
                let closing = try self.name()
                skipSpace()
                guard closing == name else { throw error("</\(closing)> closes <\(name)> (opened on line \(startLine))") }
                guard peek() == UInt8(ascii: ">") else { throw error("expected '>' in </\(name)>") }
                position += 1
                return element
            } else if starts("<!--") {
                try skip(past: "-->", what: "comment")
            } else if starts("<![CDATA[") {
                position += 9
                let start = position
                try skip(past: "]]>", what: "CDATA section")
                element.text += String(decoding: bytes[start..<(position - 3)], as: UTF8.self)
            } else if starts("<?") {
                try skip(past: "?>", what: "processing instruction")
            } else if starts("<!") {
                throw error("unexpected markup declaration inside <\(name)>")
            } else if peek() == UInt8(ascii: "<") {
                element.children.append(try self.element(depth: depth + 1))
            } else {
                element.text += try characterData(until: UInt8(ascii: "<"), what: "text")
            }
        }
    }

    private mutating func name() throws(MarkupError) -> String {
        let start = position
        while let byte = peek(), Self.isNameByte(byte) { position += 1 }
        guard position > start, let first = bytes[start...].first, !Self.isDigitOrPunctuation(first) else {
            throw error("expected a name")
        }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    /// Text up to `terminator` (not consumed), with entity and character references replaced.
    private mutating func characterData(until terminator: UInt8, what: String) throws(MarkupError) -> String {
        var out: [UInt8] = []
        while true {
            guard let byte = peek() else { throw error("end of file inside \(what)") }
            if byte == terminator { break }
            if byte == UInt8(ascii: "<") { throw error("'<' inside \(what)") }
            if byte == UInt8(ascii: "&") {
                out += try reference()
                continue
            }
            if byte == UInt8(ascii: "\n") { line += 1 }
            // XML 1.0 allows no C0 control character but tab, line feed and carriage return.
            if byte < 0x20, byte != 0x09, byte != 0x0A, byte != 0x0D { throw error("a control character (\(byte)) inside \(what)") }
            out.append(byte)
            position += 1
        }
        guard let text = String(validating: out, as: UTF8.self) else { throw error("\(what) is not UTF-8") }
        return text
    }

    private mutating func reference() throws(MarkupError) -> [UInt8] {
        let start = position
        position += 1
        while let byte = peek(), byte != UInt8(ascii: ";"), position - start < 12 { position += 1 }
        guard peek() == UInt8(ascii: ";") else { throw error("an '&' that starts no entity reference") }
        let body = String(decoding: bytes[(start + 1)..<position], as: UTF8.self)
        position += 1
        switch body {
        case "lt": return [UInt8(ascii: "<")]
        case "gt": return [UInt8(ascii: ">")]
        case "amp": return [UInt8(ascii: "&")]
        case "quot": return [UInt8(ascii: "\"")]
        case "apos": return [UInt8(ascii: "'")]
        default:
            let scalar: UInt32?
            if body.hasPrefix("#x") { scalar = UInt32(body.dropFirst(2), radix: 16) } else if body.hasPrefix("#") { scalar = UInt32(body.dropFirst(), radix: 10) } else { scalar = nil }
            guard let scalar, scalar != 0, let character = Unicode.Scalar(scalar) else { throw error("unknown entity &\(body);") }
            return Array(String(Character(character)).utf8)
        }
    }

    // MARK: - Bytes

    private func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    private func starts(_ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard position + count <= bytes.count else { return false }
        return text.withUTF8Buffer { bytes[position..<(position + count)].elementsEqual($0) }
    }

    @discardableResult
    private mutating func skipSpace() -> Bool {
        let start = position
        while let byte = peek(), byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
            if byte == 0x0A { line += 1 }
            position += 1
        }
        return position > start
    }

    private mutating func skip(past terminator: StaticString, what: String) throws(MarkupError) {
        let startLine = line
        while position < bytes.count {
            if starts(terminator) {
                position += terminator.utf8CodeUnitCount
                return
            }
            if bytes[position] == 0x0A { line += 1 }
            position += 1
        }
        throw MarkupError(line: startLine, "unterminated \(what)")
    }

    private func error(_ message: String) -> MarkupError { MarkupError(line: line, message) }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        byte >= 0x80 || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ":")
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
    }

    private static func isDigitOrPunctuation(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
    }
}

extension MarkupElement {
    /// The attribute with exactly this (prefixed) name: duplicates are judged by the name as written.
    fileprivate func attribute(exactly name: String) -> String? { attributes.first { $0.name == name }?.value }
}
