extension TOMLDocument.Parser {
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
    /// `depth`: this array's nesting level, 1 for an outermost one.
    mutating func array(key: String, depth: Int) throws(ConfigurationError) -> TOMLValue {
        guard depth <= Self.maximumArrayDepth else {
            throw fail("arrays nested deeper than \(Self.maximumArrayDepth) levels", key: key)
        }
        index += 1
        var items: [TOMLValue] = []
        while true {
            skipBlanks()
            if consume("]") { return .array(items) }
            if atLineEnd || current == "#" { throw fail("unterminated array (arrays must close on the same line)", key: key) }
            items.append(try value(key: key, depth: depth))
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
