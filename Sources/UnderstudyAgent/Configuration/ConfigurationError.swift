/// Why a configuration was rejected, located well enough for an operator to fix the file without
/// reading the parser: the file, the line and the dotted key, each when known.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file name (or path) the text came from, so messages point at the right file.
    public var source: String
    /// 1-based; nil for errors about the document as a whole, such as a missing key.
    public var line: Int?
    /// Dotted ("vm.memory_mib"), so it can be searched for in the file and in the docs.
    public var key: String?
    public var message: String

    public init(source: String, line: Int? = nil, key: String? = nil, message: String) {
        self.source = source
        self.line = line
        self.key = key
        self.message = message
    }

    /// The compiler-style `file:line: key: message` form, which editors and terminals can jump to.
    public var description: String {
        var text = source
        if let line { text += ":\(line)" }
        if let key { text += ": \(key)" }
        return text + ": " + message
    }
}
