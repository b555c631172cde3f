import Foundation

/// A parsed configuration file in a strict subset of TOML: `[table]` headers, bare keys and
/// one-line values. Anything outside the subset is an error rather than a guess, because a
/// silently misread setting on a replication agent costs far more than a refused start.
public struct TOMLDocument: Sendable {
    struct Entry: Sendable {
        var value: TOMLValue
        var line: Int
    }

    /// Named in every error, including those from the typed accessors.
    public let source: String
    private let entries: [String: Entry]

    /// Every key as "table.key" (root keys without prefix), in file order, so that checks such as
    /// `rejectUnknownKeys` report the first offending line rather than an arbitrary one.
    public let keys: [String]

    /// Parses `text`; `source` names it in errors.
    public init(parsing text: String, source: String) throws(ConfigurationError) {
        var parser = Parser(source: source, text: Array(text.unicodeScalars))
        try parser.parse()
        self.source = source
        self.entries = parser.entries
        self.keys = parser.order
    }

    /// Reads and parses the file at `path`; the path is the source named in every error.
    public init(contentsOfFile path: String) throws(ConfigurationError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw ConfigurationError(source: path, message: "configuration file \(reason)")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw ConfigurationError(source: path, message: "configuration file is not valid UTF-8")
        }
        try self.init(parsing: text, source: path)
    }

    public func value(_ key: String) -> TOMLValue? { entries[key]?.value }

    public func line(of key: String) -> Int? { entries[key]?.line }

    /// Nil when absent, so that callers can fall back to their defaults.
    public func string(_ key: String) throws(ConfigurationError) -> String? {
        guard let entry = entries[key] else { return nil }
        guard case .string(let text) = entry.value else { throw mismatch(key, expected: "a string") }
        return text
    }

    public func requiredString(_ key: String) throws(ConfigurationError) -> String {
        guard let text = try string(key) else { throw missing(key) }
        return text
    }

    /// Checks `range` here so that the error can name the line the bad value is on.
    public func integer(_ key: String, in range: ClosedRange<Int64>? = nil) throws(ConfigurationError) -> Int64? {
        guard let entry = entries[key] else { return nil }
        guard case .integer(let number) = entry.value else { throw mismatch(key, expected: "an integer") }
        if let range, !range.contains(number) {
            throw failure(key, "must be in \(range.lowerBound)...\(range.upperBound), got \(number)")
        }
        return number
    }

    public func requiredInteger(_ key: String, in range: ClosedRange<Int64>? = nil) throws(ConfigurationError) -> Int64 {
        guard let number = try integer(key, in: range) else { throw missing(key) }
        return number
    }

    /// Accepts an integer too: nobody should have to write `timeout = 5.0`.
    public func double(_ key: String) throws(ConfigurationError) -> Double? {
        switch entries[key]?.value {
        case nil: return nil
        case .float(let number): return number
        case .integer(let number): return Double(number)
        default: throw mismatch(key, expected: "a number")
        }
    }

    public func bool(_ key: String) throws(ConfigurationError) -> Bool? {
        guard let entry = entries[key] else { return nil }
        guard case .boolean(let flag) = entry.value else { throw mismatch(key, expected: "a boolean (true or false)") }
        return flag
    }

    public func strings(_ key: String) throws(ConfigurationError) -> [String]? {
        guard let entry = entries[key] else { return nil }
        guard case .array(let items) = entry.value else { throw mismatch(key, expected: "an array of strings") }
        var texts: [String] = []
        for item in items {
            guard case .string(let text) = item else { throw mismatch(key, expected: "an array of strings") }
            texts.append(text)
        }
        return texts
    }

    /// For settings with a fixed vocabulary; the error lists every allowed value so that the
    /// operator does not have to look them up.
    public func oneOf<T: RawRepresentable>(_ key: String, _ type: T.Type) throws(ConfigurationError) -> T?
    where T.RawValue == String, T: CaseIterable {
        guard let entry = entries[key] else { return nil }
        if case .string(let text) = entry.value, let choice = T(rawValue: text) { return choice }
        let allowed = T.allCases.map { quoted($0.rawValue) }.joined(separator: ", ")
        throw failure(key, "expected one of \(allowed), got \(describe(entry.value))")
    }

    /// Fails on the first key not in `known` (typo protection): without it a misspelt key is
    /// silently ignored and its setting quietly falls back to the default.
    public func rejectUnknownKeys(_ known: Set<String>) throws(ConfigurationError) {
        for key in keys where !known.contains(key) {
            var message = "unknown key"
            if let guess = closest(to: key, in: known) { message += " (did you mean \(guess)?)" }
            throw failure(key, message)
        }
    }

    private func failure(_ key: String, _ message: String) -> ConfigurationError {
        ConfigurationError(source: source, line: entries[key]?.line, key: key, message: message)
    }

    private func mismatch(_ key: String, expected: String) -> ConfigurationError {
        failure(key, "expected \(expected), got \(entries[key].map { describe($0.value) } ?? "nothing")")
    }

    private func missing(_ key: String) -> ConfigurationError {
        ConfigurationError(source: source, key: key, message: "missing required key")
    }
}

/// "string \"abc\"", "integer 5": the kind first, because a wrong kind is the usual mistake.
private func describe(_ value: TOMLValue) -> String {
    switch value {
    case .string: "string \(render(value))"
    case .integer: "integer \(render(value))"
    case .float: "float \(render(value))"
    case .boolean: "boolean \(render(value))"
    case .array: "array \(render(value))"
    }
}

/// The value in TOML syntax, as the operator would have written it.
private func render(_ value: TOMLValue) -> String {
    switch value {
    case .string(let text): quoted(text)
    case .integer(let number): String(number)
    case .float(let number): String(number)
    case .boolean(let flag): String(flag)
    case .array(let items): "[" + items.map(render).joined(separator: ", ") + "]"
    }
}

/// A TOML basic string, escaped so that control characters in a message cannot garble a terminal.
private func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            out += String(format: "\\u%04X", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// The known key within two edits of `key`, if any: enough for transpositions and slips.
private func closest(to key: String, in known: Set<String>) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var row = [i + 1]
            for (j, y) in b.enumerated() {
                row.append(min(previous[j + 1] + 1, row[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = row
        }
        return previous[b.count]
    }
    let target = Array(key)
    let scored = known.sorted().map { (candidate: $0, cost: distance(target, Array($0))) }
    guard let best = scored.min(by: { $0.cost < $1.cost }), best.cost <= 2 else { return nil }
    return best.candidate
}

extension TOMLDocument {
    /// One pass over the text. It walks Unicode scalars, not Characters, because "\r\n" is a single
    /// Character and would hide line ends. Every construct is single-line, so the line counter only
    /// moves in `endOfLine`.
    private struct Parser {
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
            if current == "[" { throw fail("arrays of tables ([[...]]) are not supported") }
            var parts: [String] = []
            repeat {
                skipBlanks()
                let part = bareKey()
                if part.isEmpty { throw fail("invalid table header \(lineText(from: start, upTo: "#"))") }
                parts.append(part)
                skipBlanks()
            } while consume(".")
            let name = parts.joined(separator: ".")
            guard consume("]") else {
                if atLineEnd || current == "#" { throw fail("unterminated table header [\(name)") }
                throw fail("invalid table name: unexpected \(quoted(String(current!))) in [\(name)")
            }
            if let first = headers[name] { throw fail("duplicate table [\(name)], first defined on line \(first)") }
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
            skipBlanks()
            if atLineEnd || current == "#" { throw fail("missing value", key: key) }
            let value = try value(key: key)
            entries[key] = TOMLDocument.Entry(value: value, line: line)
            order.append(key)
            return key
        }

        mutating func value(key: String) throws(ConfigurationError) -> TOMLValue {
            switch current {
            case "\"": return .string(try string(key: key, quote: "\"", escapes: true))
            case "'": return .string(try string(key: key, quote: "'", escapes: false))
            case "[": return try array(key: key)
            case "{": throw fail("inline tables are not supported; use a [table] header", key: key)
            default: return try bareValue(key: key)
            }
        }

        /// Basic ("...", with escapes) and literal ('...', verbatim) strings, both single-line.
        mutating func string(key: String, quote: Unicode.Scalar, escapes: Bool) throws(ConfigurationError) -> String {
            index += 1
            if current == quote && next == quote { throw fail("multi-line strings are not supported", key: key) }
            var text = String.UnicodeScalarView()
            while true {
                if atLineEnd { throw fail("unterminated string", key: key) }
                let scalar = current!
                index += 1
                switch scalar {
                case quote:
                    return String(text)
                case "\\" where escapes:
                    text.append(try escape(key: key))
                case _ where (scalar.value < 0x20 && scalar != "\t") || scalar.value == 0x7F:
                    throw fail("control character \(quoted(String(scalar))) in string; use an escape", key: key)
                default:
                    text.append(scalar)
                }
            }
        }

        mutating func escape(key: String) throws(ConfigurationError) -> Unicode.Scalar {
            if atLineEnd { throw fail("unterminated string", key: key) }
            let letter = current!
            index += 1
            switch letter {
            case "\"": return "\""
            case "\\": return "\\"
            case "n": return "\n"
            case "t": return "\t"
            case "r": return "\r"
            case "b": return "\u{08}"
            case "f": return "\u{0C}"
            case "u", "U":
                let width = letter == "u" ? 4 : 8
                var digits = ""
                while digits.count < width, let scalar = current, scalar.properties.isASCIIHexDigit {
                    digits.unicodeScalars.append(scalar)
                    index += 1
                }
                guard digits.count == width, let code = UInt32(digits, radix: 16), let scalar = Unicode.Scalar(code) else {
                    throw fail("invalid escape \\\(letter)\(digits): expected \(width) hex digits of a Unicode scalar", key: key)
                }
                return scalar
            default:
                throw fail("unknown escape \\\(letter) in string", key: key)
            }
        }

        /// One-line arrays only: a missing `]` is reported here rather than swallowing later lines.
        mutating func array(key: String) throws(ConfigurationError) -> TOMLValue {
            index += 1
            var items: [TOMLValue] = []
            while true {
                skipBlanks()
                if consume("]") { return .array(items) }
                if atLineEnd || current == "#" { throw fail("unterminated array (arrays must close on the same line)", key: key) }
                items.append(try value(key: key))
                skipBlanks()
                if consume(",") { continue }
                if consume("]") { return .array(items) }
                if atLineEnd || current == "#" { throw fail("unterminated array (arrays must close on the same line)", key: key) }
                throw fail("expected ',' or ']' in array, got \(quoted(lineText(from: index)))", key: key)
            }
        }

        /// Booleans and numbers, which end at whitespace or at array punctuation.
        mutating func bareValue(key: String) throws(ConfigurationError) -> TOMLValue {
            let start = index
            while let scalar = current, !" \t\r\n,[]#".unicodeScalars.contains(scalar) { index += 1 }
            let token = String(String.UnicodeScalarView(text[start..<index]))
            let scalars = Array(token.unicodeScalars)
            func isDigit(_ offset: Int) -> Bool { offset < scalars.count && ("0"..."9").contains(scalars[offset]) }
            switch token {
            case "true": return .boolean(true)
            case "false": return .boolean(false)
            case "": throw fail("expected a value, got \(quoted(lineText(from: index)))", key: key)
            default: break
            }
            if (isDigit(0) && isDigit(1) && isDigit(2) && isDigit(3) && scalars.count > 4 && scalars[4] == "-")
                || (isDigit(0) && isDigit(1) && scalars.count > 2 && scalars[2] == ":") {
                throw fail("dates and times are not supported; quote the value as a string", key: key)
            }
            guard "+-.0123456789".unicodeScalars.contains(scalars[0]) else {
                throw fail("invalid value \(token) (strings must be quoted)", key: key)
            }
            return try number(token, key: key)
        }

        /// Integers and floats per TOML: `_` only between digits, no leading zeros, and no silent
        /// overflow (an out-of-range integer is an error, never a wrapped or rounded one).
        func number(_ token: String, key: String) throws(ConfigurationError) -> TOMLValue {
            var body = Array(token.unicodeScalars)
            var literal = ""
            if body.first == "+" || body.first == "-" { literal.unicodeScalars.append(body.removeFirst()) }
            if body.count > 1, body[0] == "0", "xob".unicodeScalars.contains(body[1]) {
                throw fail("hexadecimal, octal and binary integers are not supported", key: key)
            }
            let bad = fail("invalid number \(token)", key: key)
            var position = 0
            func digits() -> String? {
                var run = ""
                while position < body.count {
                    let scalar = body[position]
                    let isDigit = ("0"..."9").contains(scalar)
                    let nextIsDigit = position + 1 < body.count && ("0"..."9").contains(body[position + 1])
                    if isDigit {
                        run.unicodeScalars.append(scalar)
                    } else if !(scalar == "_" && !run.isEmpty && nextIsDigit) {
                        break
                    }
                    position += 1
                }
                return run.isEmpty ? nil : run
            }
            guard let whole = digits() else { throw bad }
            if whole.count > 1 && whole.hasPrefix("0") { throw fail("leading zeros are not allowed in \(token)", key: key) }
            literal += whole
            var isFloat = false
            if position < body.count, body[position] == "." {
                position += 1
                guard let fraction = digits() else { throw bad }
                literal += "." + fraction
                isFloat = true
            }
            if position < body.count, body[position] == "e" || body[position] == "E" {
                position += 1
                literal += "e"
                if position < body.count, body[position] == "+" || body[position] == "-" {
                    literal.unicodeScalars.append(body[position])
                    position += 1
                }
                guard let exponent = digits() else { throw bad }
                literal += exponent
                isFloat = true
            }
            guard position == body.count else { throw bad }
            if isFloat {
                guard let number = Double(literal), number.isFinite else { throw fail("float \(token) is out of range", key: key) }
                return .float(number)
            }
            guard let number = Int64(literal) else { throw fail("integer \(token) does not fit in 64 bits", key: key) }
            return .integer(number)
        }
    }
}
