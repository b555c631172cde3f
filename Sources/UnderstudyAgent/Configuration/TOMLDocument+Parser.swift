import Foundation

extension TOMLDocument {
    /// One pass over the text. It walks Unicode scalars, not Characters, because "\r\n" is a single
    /// Character and would hide line ends. Every construct is single-line, so the line counter only
    /// moves in `endOfLine`.
    struct Parser {
        let source: String
        let text: [Unicode.Scalar]
        var index = 0
        var line = 1
        /// The current `[table]` as a key prefix; empty at the root.
        var table = ""
        var entries: [String: TOMLDocument.Entry] = [:]
        var order: [String] = []
        /// Every table path, including the parents a dotted header implies, to where it first appeared.
        var tables: [String: Int] = [:]
        /// Only tables named by a header: naming one twice is an error, implying it again is not.
        var headers: [String: Int] = [:]
        /// Arrays of tables (`[[name]]`): how many elements each has so far. Element i's keys are
        /// "name[i].key", so that they stay flat like every other key.
        var arrays: [String: Int] = [:]

        /// How deeply arrays may nest. Parsing recurses once per level, so without a limit a line of
        /// `[[[[…` overflows the stack; no setting needs more than two levels.
        static let maximumArrayDepth = 32

        init(source: String, text: [Unicode.Scalar]) {
            self.source = source
            self.text = text
        }

        var current: Unicode.Scalar? { index < text.count ? text[index] : nil }
        var next: Unicode.Scalar? { index + 1 < text.count ? text[index + 1] : nil }
        var atLineEnd: Bool { current == nil || current == "\n" || (current == "\r" && next == "\n") }

        func fail(_ message: String, key: String? = nil) -> ConfigurationError {
            ConfigurationError(source: source, line: line, key: key, message: message)
        }

        mutating func parse() throws(ConfigurationError) {
            while current != nil {
                skipBlanks()
                switch current {
                case "[":
                    let name = try header()
                    try endOfLine(after: "table header [\(name)]")
                case "#", "\n", "\r", nil:
                    try endOfLine(after: "blank line")
                default:
                    let key = try keyValue()
                    try endOfLine(after: "value", key: key)
                }
            }
        }

        mutating func skipBlanks() {
            while current == " " || current == "\t" { index += 1 }
        }

        mutating func consume(_ scalar: Unicode.Scalar) -> Bool {
            guard current == scalar else { return false }
            index += 1
            return true
        }

        /// The rest of the line from `start`, for quoting in messages.
        func lineText(from start: Int, upTo stop: Unicode.Scalar? = nil) -> String {
            var end = start
            while end < text.count, text[end] != "\n", text[end] != stop { end += 1 }
            return String(String.UnicodeScalarView(text[start..<end])).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// Only a comment may follow a statement, so that `a = 1 2` is refused rather than half-read.
        mutating func endOfLine(after what: String, key: String? = nil) throws(ConfigurationError) {
            skipBlanks()
            if current == "#" {
                while let scalar = current, scalar != "\n" { index += 1 }
            }
            if current == "\r" && next == "\n" { index += 1 }
            switch current {
            case nil: return
            case "\n":
                index += 1
                line += 1
            default:
                throw fail("unexpected \(quoted(lineText(from: index))) after \(what)", key: key)
            }
        }

        /// A bare key or table-name segment; empty when the next character cannot start one.
        mutating func bareKey() -> String {
            var name = String.UnicodeScalarView()
            while let scalar = current, scalar.isASCII,
                  scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_" || scalar == "-" {
                name.append(scalar)
                index += 1
            }
            return String(name)
        }

        mutating func header() throws(ConfigurationError) -> String {
            let start = index
            index += 1
            let isArray = consume("[")
            var parts: [String] = []
            repeat {
                skipBlanks()
                let part = bareKey()
                if part.isEmpty { throw fail("invalid table header \(lineText(from: start, upTo: "#"))") }
                parts.append(part)
                skipBlanks()
            } while consume(".")
            let name = parts.joined(separator: ".")
            guard consume("]"), !isArray || consume("]") else {
                if isArray { throw fail("unterminated array of tables [[\(name)]]") }
                if atLineEnd || current == "#" { throw fail("unterminated table header [\(name)") }
                throw fail("invalid table name: unexpected \(quoted(String(current!))) in [\(name)")
            }
            if isArray {
                if let first = headers[name] ?? tables[name] { throw fail("array of tables [[\(name)]] conflicts with table [\(name)] on line \(first)") }
                if let entry = entries[name] { throw fail("array of tables [[\(name)]] conflicts with key \(name) set on line \(entry.line)") }
                for end in parts.indices.dropLast() {
                    let path = parts[...end].joined(separator: ".")
                    if let entry = entries[path] { throw fail("array of tables [[\(name)]] conflicts with key \(path) set on line \(entry.line)") }
                    tables[path] = tables[path] ?? line
                }
                let element = arrays[name, default: 0]
                arrays[name] = element + 1
                table = "\(name)[\(element)]"
                return name
            }
            if let first = headers[name] { throw fail("duplicate table [\(name)], first defined on line \(first)") }
            if arrays[name] != nil { throw fail("table [\(name)] conflicts with the array of tables [[\(name)]]") }
            for end in parts.indices {
                let path = parts[...end].joined(separator: ".")
                if let entry = entries[path] {
                    throw fail("table [\(name)] conflicts with key \(path) set on line \(entry.line)")
                }
                tables[path] = tables[path] ?? line
            }
            headers[name] = line
            table = name
            return name
        }

        mutating func keyValue() throws(ConfigurationError) -> String {
            let start = index
            let name = bareKey()
            let written = lineText(from: start, upTo: "=")
            let invalidKey = written.isEmpty
                ? "missing key before '='" : "invalid key \(written) (keys are bare words of letters, digits, _ and -)"
            if name.isEmpty { throw fail(invalidKey) }
            let key = table.isEmpty ? name : table + "." + name
            let afterName = index
            skipBlanks()
            if !consume("=") {
                if current == "." { throw fail("dotted keys are not supported; use a [table] header", key: key) }
                if index == afterName && !atLineEnd && current != "#" { throw fail(invalidKey) }
                throw fail("expected '=' after key", key: key)
            }
            if let first = entries[key] { throw fail("duplicate key, first set on line \(first.line)", key: key) }
            if let first = tables[key] { throw fail("key conflicts with table [\(key)] on line \(first)", key: key) }
            if arrays[key] != nil { throw fail("key conflicts with the array of tables [[\(key)]]", key: key) }
            skipBlanks()
            if atLineEnd || current == "#" { throw fail("missing value", key: key) }
            let value = try value(key: key)
            entries[key] = TOMLDocument.Entry(value: value, line: line)
            order.append(key)
            return key
        }

        /// `depth`: how many arrays enclose the value.
        mutating func value(key: String, depth: Int = 0) throws(ConfigurationError) -> TOMLValue {
            switch current {
            case "\"": return .string(try string(key: key, quote: "\"", escapes: true))
            case "'": return .string(try string(key: key, quote: "'", escapes: false))
            case "[": return try array(key: key, depth: depth + 1)
            case "{": throw fail("inline tables are not supported; use a [table] header", key: key)
            default: return try bareValue(key: key)
            }
        }
    }
}
