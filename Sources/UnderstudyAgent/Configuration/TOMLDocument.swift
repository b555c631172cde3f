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

    /// How many elements each array of tables (`[[name]]`) has; element i's keys are "name[i].key".
    private let arrays: [String: Int]

    /// Every key as "table.key" (root keys without prefix; "name[i].key" in an array of tables), in file order, so that checks such as
    /// `rejectUnknownKeys` report the first offending line rather than an arbitrary one.
    public let keys: [String]

    /// Parses `text`; `source` names it in errors.
    public init(parsing text: String, source: String) throws(ConfigurationError) {
        var parser = Parser(source: source, text: Array(text.unicodeScalars))
        try parser.parse()
        self.source = source
        self.entries = parser.entries
        self.keys = parser.order
        self.arrays = parser.arrays
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

    /// The number of `[[name]]` elements; 0 when there are none.
    public func count(ofTables name: String) -> Int { arrays[name] ?? 0 }

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
        // An array's element keys are known by their name without the index: "a[3].b" as "a.b".
        for key in keys where !known.contains(key) && !known.contains(Self.withoutIndices(key)) {
            var message = "unknown key"
            if let guess = closest(to: key, in: known) { message += " (did you mean \(guess)?)" }
            throw failure(key, message)
        }
    }

    /// "network.rules[2].port" as "network.rules.port".
    static func withoutIndices(_ key: String) -> String {
        var out = ""
        var inIndex = false
        for character in key {
            if character == "[" { inIndex = true } else if character == "]" { inIndex = false } else if !inIndex { out.append(character) }
        }
        return out
    }

    func failure(_ key: String, _ message: String) -> ConfigurationError {
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
func render(_ value: TOMLValue) -> String {
    switch value {
    case .string(let text): quoted(text)
    case .integer(let number): String(number)
    case .float(let number): String(number)
    case .boolean(let flag): String(flag)
    case .array(let items): "[" + items.map(render).joined(separator: ", ") + "]"
    }
}

/// A TOML basic string, escaped so that control characters in a message cannot garble a terminal.
func quoted(_ text: String) -> String {
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
