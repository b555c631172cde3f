import Foundation
import Testing
import UnderstudyNetwork
import UnderstudyQEMU
@testable import UnderstudyAgent

/// Parses as "agent.toml", the name operators will see in real messages.
private func parse(_ text: String) throws(ConfigurationError) -> TOMLDocument {
    try TOMLDocument(parsing: text, source: "agent.toml")
}

private func parseError(_ text: String) -> ConfigurationError? {
    do {
        _ = try parse(text)
        return nil
    } catch {
        return error
    }
}

/// The error a typed accessor throws, or nil when it does not throw.
private func accessorError<T>(_ body: () throws -> T) -> ConfigurationError? {
    do {
        _ = try body()
        return nil
    } catch let error as ConfigurationError {
        return error
    } catch {
        return nil
    }
}

private enum DirtyTracking: String, CaseIterable {
    case auto, uffd, soft
}

/// A document that must be rejected: the line the error must name, its key, and a fragment of its message.
struct BadInput: Sendable, CustomTestStringConvertible {
    var text: String
    var line: Int
    var key: String?
    var message: String
    var testDescription: String { message }

    init(_ text: String, line: Int, key: String? = nil, _ message: String) {
        self.text = text
        self.line = line
        self.key = key
        self.message = message
    }
}

/// Every error sits below a comment and a blank line, so a wrong line count cannot pass.
private let header = "# Understudy agent\n\n"

private let badInputs: [BadInput] = [
    // Duplicates and clashes between keys and tables.
    BadInput(header + "a = 1\nb = 2\na = 3", line: 5, key: "a", "duplicate key, first set on line 3"),
    BadInput(header + "[vm]\nid = \"x\"\n\nid = \"y\"", line: 6, key: "vm.id", "duplicate key, first set on line 4"),
    BadInput(header + "[vm]\nid = 1\n[node]\n[vm]", line: 6, "duplicate table [vm], first defined on line 3"),
    BadInput(header + "[a.b]\n[a.b]", line: 4, "duplicate table [a.b], first defined on line 3"),
    BadInput(header + "vm = 1\n[vm]", line: 4, "table [vm] conflicts with key vm set on line 3"),
    BadInput(header + "[a]\nb = 1\n[a.b.c]", line: 5, "table [a.b.c] conflicts with key a.b set on line 4"),
    BadInput(header + "[a.b]\n[a]\nb = 1", line: 5, key: "a.b", "key conflicts with table [a.b] on line 3"),
    // Strings.
    BadInput(header + "a = \"abc\nb = 1", line: 3, key: "a", "unterminated string"),
    BadInput(header + "a = 'abc\nb = 1", line: 3, key: "a", "unterminated string"),
    BadInput(header + "a = \"abc\\", line: 3, key: "a", "unterminated string"),
    BadInput(header + "a = \"abc\r\n", line: 3, key: "a", "unterminated string"),
    BadInput(header + "a = \"\\q\"", line: 3, key: "a", "unknown escape \\q in string"),
    BadInput(header + "a = \"\\u12\"", line: 3, key: "a", "invalid escape \\u12: expected 4 hex digits"),
    BadInput(header + "a = \"\\uD800\"", line: 3, key: "a", "invalid escape \\uD800"),
    BadInput(header + "a = \"tab\u{01}\"", line: 3, key: "a", "control character \"\\u0001\" in string"),
    BadInput(header + "a = \"\"\"\nx\n\"\"\"", line: 3, key: "a", "multi-line strings are not supported"),
    BadInput(header + "a = '''x'''", line: 3, key: "a", "multi-line strings are not supported"),
    BadInput(header + "name = primary", line: 3, key: "name", "invalid value primary (strings must be quoted)"),
    // Keys and '='.
    BadInput(header + "name \"x\"", line: 3, key: "name", "expected '=' after key"),
    BadInput(header + "[vm]\nname", line: 4, key: "vm.name", "expected '=' after key"),
    BadInput(header + "name # = 1", line: 3, key: "name", "expected '=' after key"),
    BadInput(header + "\"quoted\" = 1", line: 3, "invalid key \"quoted\""),
    BadInput(header + "foo$ = 1", line: 3, "invalid key foo$"),
    BadInput(header + "= 1", line: 3, "missing key before '='"),
    BadInput(header + "a.b = 1", line: 3, key: "a", "dotted keys are not supported"),
    // Missing values and trailing garbage.
    BadInput(header + "a =", line: 3, key: "a", "missing value"),
    BadInput(header + "a =   # nothing", line: 3, key: "a", "missing value"),
    BadInput(header + "a = 1 2", line: 3, key: "a", "unexpected \"2\" after value"),
    BadInput(header + "a = \"x\" y # c", line: 3, key: "a", "unexpected \"y # c\" after value"),
    BadInput(header + "a = [1] ]", line: 3, key: "a", "unexpected \"]\" after value"),
    BadInput(header + "a = true1", line: 3, key: "a", "invalid value true1"),
    BadInput(header + "[vm] x = 1", line: 3, "unexpected \"x = 1\" after table header [vm]"),
    // Table headers.
    BadInput(header + "[]", line: 3, "invalid table header []"),
    BadInput(header + "[a..b]", line: 3, "invalid table header [a..b]"),
    BadInput(header + "[\"q\"]", line: 3, "invalid table header [\"q\"]"),
    BadInput(header + "[a b]", line: 3, "invalid table name: unexpected \"b\" in [a"),
    BadInput(header + "[vm", line: 3, "unterminated table header [vm"),
    BadInput(header + "[[servers]", line: 3, "unterminated array of tables [[servers]]"),
    BadInput(header + "[servers]\n[[servers]]", line: 4, "array of tables [[servers]] conflicts with table [servers] on line 3"),
    BadInput(header + "[[servers]]\n[servers]", line: 4, "table [servers] conflicts with the array of tables [[servers]]"),
    BadInput(header + "[a]\nb = 1\n[[a.b]]", line: 5, "array of tables [[a.b]] conflicts with key a.b set on line 4"),
    BadInput(header + "[[a.b]]\n[a]\nb = 1", line: 5, key: "a.b", "key conflicts with the array of tables [[a.b]]"),
    // Arrays.
    BadInput(header + "a = [1, 2", line: 3, key: "a", "unterminated array"),
    BadInput(header + "a = [1, 2 # ]", line: 3, key: "a", "unterminated array"),
    BadInput(header + "a = [1 2]", line: 3, key: "a", "expected ',' or ']' in array, got \"2]\""),
    BadInput(header + "a = [1,,2]", line: 3, key: "a", "expected a value, got \",2]\""),
    // Numbers.
    BadInput(header + "a = 012", line: 3, key: "a", "leading zeros are not allowed in 012"),
    BadInput(header + "a = -012", line: 3, key: "a", "leading zeros are not allowed in -012"),
    BadInput(header + "a = 01.5", line: 3, key: "a", "leading zeros are not allowed in 01.5"),
    BadInput(header + "a = 1__0", line: 3, key: "a", "invalid number 1__0"),
    BadInput(header + "a = _1", line: 3, key: "a", "invalid value _1"),
    BadInput(header + "a = 1_", line: 3, key: "a", "invalid number 1_"),
    BadInput(header + "a = 1_.5", line: 3, key: "a", "invalid number 1_.5"),
    BadInput(header + "a = 1.", line: 3, key: "a", "invalid number 1."),
    BadInput(header + "a = .5", line: 3, key: "a", "invalid number .5"),
    BadInput(header + "a = 1e", line: 3, key: "a", "invalid number 1e"),
    BadInput(header + "a = 1.5.2", line: 3, key: "a", "invalid number 1.5.2"),
    BadInput(header + "a = +", line: 3, key: "a", "invalid number +"),
    BadInput(header + "a = 12abc", line: 3, key: "a", "invalid number 12abc"),
    BadInput(header + "a = 9223372036854775808", line: 3, key: "a", "integer 9223372036854775808 does not fit in 64 bits"),
    BadInput(header + "a = -9223372036854775809", line: 3, key: "a", "does not fit in 64 bits"),
    BadInput(header + "a = 1e999", line: 3, key: "a", "float 1e999 is out of range"),
    BadInput(header + "a = 0x1F", line: 3, key: "a", "hexadecimal, octal and binary integers are not supported"),
    BadInput(header + "a = inf", line: 3, key: "a", "invalid value inf"),
    // Unsupported kinds.
    BadInput(header + "d = 1979-05-27", line: 3, key: "d", "dates and times are not supported"),
    BadInput(header + "d = 1979-05-27T07:32:00Z", line: 3, key: "d", "dates and times are not supported"),
    BadInput(header + "t = 07:32:00", line: 3, key: "t", "dates and times are not supported"),
    BadInput(header + "a = { x = 1 }", line: 3, key: "a", "inline tables are not supported"),
    // Line counting survives CRLF, comments with quotes and strings with '#'.
    BadInput("# it's \"quoted\"\r\na = \"#\" # x\r\n\r\nb = 'c' d\r\n", line: 4, key: "b", "unexpected \"d\" after value"),
]

@Suite("TOML configuration documents")
struct TOMLDocumentTests {
    @Test func arraysOfTablesNumberTheirElements() throws {
        let document = try parse("""
            [[network.rules]]
            action = "deny"
            [network]
            tap = "t0"
            [[network.rules]]
            action = "allow"
            port = "80"
            """)
        #expect(document.count(ofTables: "network.rules") == 2)
        #expect(document.count(ofTables: "other") == 0)
        #expect(try document.string("network.rules[0].action") == "deny")
        #expect(try document.string("network.rules[1].port") == "80")
        #expect(document.line(of: "network.rules[1].port") == 7)
        #expect(try document.string("network.tap") == "t0")
        try document.rejectUnknownKeys(["network.rules.action", "network.rules.port", "network.tap"])
        #expect(throws: ConfigurationError.self) { try document.rejectUnknownKeys(["network.rules.action", "network.tap"]) }
    }

    @Test func parsesEveryValueKind() throws {
        let document = try parse(#"""
            basic = "a \"q\" \\ \n\t\r \u00e9 \U0001F600 \b\f"
            literal = 'C:\path\no "escapes"'
            empty = ""
            unicode = "naïve ✓"
            int = 42
            plus = +7
            negative = -17
            zero = 0
            minus_zero = -0
            grouped = 1_000_000
            largest = 9223372036854775807
            smallest = -9223372036854775808
            float = 1.5
            negative_float = -0.25
            exponent = 1e3
            small = 1.5e-3
            upper = 2E+2
            grouped_float = 1_000.000_5
            yes = true
            no = false
            numbers = [1, 2, 3]
            names = ["a", 'b', ]
            nested = [[1, 2], ["x"], []]
            mixed = [1, 2.5, true, "s"]
            empty_array = []
            tight=[1,2]
            key-with_dash = 1
            """#)
        #expect(document.value("basic") == .string("a \"q\" \\ \n\t\r é 😀 \u{08}\u{0C}"))
        #expect(document.value("literal") == .string(#"C:\path\no "escapes""#))
        #expect(document.value("empty") == .string(""))
        #expect(document.value("unicode") == .string("naïve ✓"))
        #expect(document.value("int") == .integer(42))
        #expect(document.value("plus") == .integer(7))
        #expect(document.value("negative") == .integer(-17))
        #expect(document.value("zero") == .integer(0))
        #expect(document.value("minus_zero") == .integer(0))
        #expect(document.value("grouped") == .integer(1_000_000))
        #expect(document.value("largest") == .integer(.max))
        #expect(document.value("smallest") == .integer(.min))
        #expect(document.value("float") == .float(1.5))
        #expect(document.value("negative_float") == .float(-0.25))
        #expect(document.value("exponent") == .float(1000))
        #expect(document.value("small") == .float(0.0015))
        #expect(document.value("upper") == .float(200))
        #expect(document.value("grouped_float") == .float(1000.0005))
        #expect(document.value("yes") == .boolean(true))
        #expect(document.value("no") == .boolean(false))
        #expect(document.value("numbers") == .array([.integer(1), .integer(2), .integer(3)]))
        #expect(document.value("names") == .array([.string("a"), .string("b")]))
        #expect(document.value("nested") == .array([.array([.integer(1), .integer(2)]), .array([.string("x")]), .array([])]))
        #expect(document.value("mixed") == .array([.integer(1), .float(2.5), .boolean(true), .string("s")]))
        #expect(document.value("empty_array") == .array([]))
        #expect(document.value("tight") == .array([.integer(1), .integer(2)]))
        #expect(document.value("key-with_dash") == .integer(1))
        #expect(document.keys.count == 27)
        #expect(document.value("absent") == nil)
        #expect(document.line(of: "absent") == nil)
    }

    @Test func commentsAndBlankLinesAreIgnored() throws {
        let document = try parse(
            "# leading comment\n  \t\n"
                + "a = \"# not a comment\" # a comment\n"
                + "b = '# nor this'#tight comment\n"
                + "   c = [1, 2] # ] not the end\n"
                + "# trailing\n\n")
        #expect(document.keys == ["a", "b", "c"])
        #expect(document.value("a") == .string("# not a comment"))
        #expect(document.value("b") == .string("# nor this"))
        #expect(document.value("c") == .array([.integer(1), .integer(2)]))
        #expect(document.line(of: "c") == 5)
        #expect(try parse("").keys.isEmpty)
        #expect(try parse("# only a comment").keys.isEmpty)
    }

    @Test func crlfLineEndingsCountAsOneLine() throws {
        let document = try parse("a = 1\r\n\r\n[t]\r\nb = \"x\" # c\r\n")
        #expect(document.value("a") == .integer(1))
        #expect(document.value("t.b") == .string("x"))
        #expect(document.line(of: "t.b") == 4)
    }

    @Test func tablesPrefixTheirKeysAndLinesAreRecorded() throws {
        let document = try parse("""
            root = 1

            [vm]
            id = "web-1"
            [ a . b ]  # spaces around names are allowed
            c = true
            [a]
            d = 2
            """)
        #expect(document.keys == ["root", "vm.id", "a.b.c", "a.d"])
        #expect(document.value("vm.id") == .string("web-1"))
        #expect(document.value("a.b.c") == .boolean(true))
        #expect(document.value("a.d") == .integer(2))
        #expect(document.value("id") == nil)
        #expect(document.line(of: "root") == 1)
        #expect(document.line(of: "vm.id") == 4)
        #expect(document.line(of: "a.b.c") == 6)
        #expect(document.line(of: "a.d") == 8)
    }

    @Test(arguments: badInputs)
    func rejectsWithTheLineAndKey(_ input: BadInput) throws {
        let error = try #require(parseError(input.text), "accepted: \(input.text.debugDescription)")
        #expect(error.source == "agent.toml")
        #expect(error.line == input.line, "\(error)")
        #expect(error.key == input.key, "\(error)")
        #expect(error.message.contains(input.message), "\(error)")
    }

    @Test func errorDescriptionOmitsUnknownParts() {
        #expect(ConfigurationError(source: "agent.toml", line: 12, key: "vm.memory_mib", message: "expected an integer, got string \"x\"").description
            == "agent.toml:12: vm.memory_mib: expected an integer, got string \"x\"")
        #expect(ConfigurationError(source: "agent.toml", key: "vm.id", message: "missing required key").description
            == "agent.toml: vm.id: missing required key")
        #expect(ConfigurationError(source: "agent.toml", line: 3, message: "duplicate table [vm]").description
            == "agent.toml:3: duplicate table [vm]")
        #expect(ConfigurationError(source: "agent.toml", message: "configuration file does not exist").description
            == "agent.toml: configuration file does not exist")
    }

    @Test func typedAccessorsReturnValuesAndNilWhenAbsent() throws {
        let document = try parse("""
            name = "primary"
            memory = 256
            ratio = 0.5
            whole = 2
            on = true
            hosts = ["a", "b"]
            mode = "uffd"
            """)
        #expect(try document.string("name") == "primary")
        #expect(try document.requiredString("name") == "primary")
        #expect(try document.integer("memory") == 256)
        #expect(try document.integer("memory", in: 256...256) == 256)
        #expect(try document.requiredInteger("memory", in: 1...1024) == 256)
        #expect(try document.double("ratio") == 0.5)
        #expect(try document.double("whole") == 2.0)
        #expect(try document.bool("on") == true)
        #expect(try document.strings("hosts") == ["a", "b"])
        #expect(try document.oneOf("mode", DirtyTracking.self) == .uffd)
        #expect(try document.string("nope") == nil)
        #expect(try document.integer("nope", in: 1...2) == nil)
        #expect(try document.double("nope") == nil)
        #expect(try document.bool("nope") == nil)
        #expect(try document.strings("nope") == nil)
        #expect(try document.oneOf("nope", DirtyTracking.self) == nil)
    }

    @Test func typedAccessorErrorsNameTheKeyLineAndValue() throws {
        let document = try parse("""
            [vm]
            memory_mib = "abc"
            vcpus = 0
            ratio = "half"
            on = 1
            hosts = ["a", 2]
            single = "a"
            mode = "fast"
            number_mode = 3
            big = 5000000000
            name = 7
            """)
        func describe<T>(_ body: () throws -> T) -> String? { accessorError(body)?.description }
        #expect(describe { try document.integer("vm.memory_mib") }
            == "agent.toml:2: vm.memory_mib: expected an integer, got string \"abc\"")
        #expect(describe { try document.requiredInteger("vm.vcpus", in: 1...64) }
            == "agent.toml:3: vm.vcpus: must be in 1...64, got 0")
        #expect(describe { try document.integer("vm.big", in: 0...Int64(UInt32.max)) }
            == "agent.toml:10: vm.big: must be in 0...4294967295, got 5000000000")
        #expect(describe { try document.double("vm.ratio") }
            == "agent.toml:4: vm.ratio: expected a number, got string \"half\"")
        #expect(describe { try document.bool("vm.on") }
            == "agent.toml:5: vm.on: expected a boolean (true or false), got integer 1")
        #expect(describe { try document.strings("vm.hosts") }
            == "agent.toml:6: vm.hosts: expected an array of strings, got array [\"a\", 2]")
        #expect(describe { try document.strings("vm.single") }
            == "agent.toml:7: vm.single: expected an array of strings, got string \"a\"")
        #expect(describe { try document.oneOf("vm.mode", DirtyTracking.self) }
            == "agent.toml:8: vm.mode: expected one of \"auto\", \"uffd\", \"soft\", got string \"fast\"")
        #expect(describe { try document.oneOf("vm.number_mode", DirtyTracking.self) }
            == "agent.toml:9: vm.number_mode: expected one of \"auto\", \"uffd\", \"soft\", got integer 3")
        #expect(describe { try document.string("vm.name") }
            == "agent.toml:11: vm.name: expected a string, got integer 7")
        #expect(describe { try document.requiredString("vm.name") }
            == "agent.toml:11: vm.name: expected a string, got integer 7")
        #expect(describe { try document.integer("vm.ratio") }
            == "agent.toml:4: vm.ratio: expected an integer, got string \"half\"")
        #expect(describe { try document.requiredString("vm.id") } == "agent.toml: vm.id: missing required key")
        #expect(describe { try document.requiredInteger("vm.memory", in: 1...2) } == "agent.toml: vm.memory: missing required key")
        let missing = try #require(accessorError { try document.requiredString("vm.id") })
        #expect(missing.line == nil)
        #expect(missing.key == "vm.id")
    }

    @Test func rejectUnknownKeysFailsOnTheFirstUnknownKey() throws {
        let document = try parse("""
            [vm]
            id = "web-1"
            memroy_mib = 256
            colour = "blue"
            """)
        let known: Set = ["vm.id", "vm.memory_mib", "vm.cmdline"]
        let error = try #require(accessorError { try document.rejectUnknownKeys(known) })
        #expect(error.line == 3)
        #expect(error.key == "vm.memroy_mib")
        #expect(error.description == "agent.toml:3: vm.memroy_mib: unknown key (did you mean vm.memory_mib?)")

        let far = try #require(accessorError { try document.rejectUnknownKeys(known.union(["vm.memroy_mib"])) })
        #expect(far.description == "agent.toml:4: vm.colour: unknown key")

        try document.rejectUnknownKeys(known.union(["vm.memroy_mib", "vm.colour"]))
    }

    private static let realistic = """
        # Understudy agent
        [node]
        name = "primary"
        certificates = "/etc/understudy/certs"
        [vm]
        id = "web-1"
        memory_mib = 256
        cmdline = "console=ttyS0 quiet"
        [replication]
        interval_ms = 25
        dirty_tracking = "auto"
        """

    @Test func readsARealisticConfiguration() throws {
        let document = try parse(Self.realistic)
        try document.rejectUnknownKeys([
            "node.name", "node.certificates", "vm.id", "vm.memory_mib", "vm.cmdline",
            "replication.interval_ms", "replication.dirty_tracking", "replication.compression",
        ])
        #expect(document.keys == [
            "node.name", "node.certificates", "vm.id", "vm.memory_mib", "vm.cmdline",
            "replication.interval_ms", "replication.dirty_tracking",
        ])
        #expect(try document.requiredString("node.name") == "primary")
        #expect(try document.requiredString("node.certificates") == "/etc/understudy/certs")
        #expect(try document.requiredString("vm.id") == "web-1")
        #expect(try document.requiredInteger("vm.memory_mib", in: 16...1_048_576) == 256)
        #expect(try document.string("vm.cmdline") == "console=ttyS0 quiet")
        #expect(try document.requiredInteger("replication.interval_ms", in: 1...10_000) == 25)
        #expect(try document.oneOf("replication.dirty_tracking", DirtyTracking.self) == .auto)
        #expect(try document.string("replication.compression") == nil)
        #expect(document.line(of: "replication.dirty_tracking") == 11)
    }

    @Test func readsAFileAndNamesItsPathInErrors() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-toml-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let good = directory.appendingPathComponent("agent.toml").path
        try Self.realistic.write(toFile: good, atomically: true, encoding: .utf8)
        let document = try TOMLDocument(contentsOfFile: good)
        #expect(document.source == good)
        #expect(try document.requiredInteger("vm.memory_mib") == 256)

        let bad = directory.appendingPathComponent("bad.toml").path
        try "[vm]\nmemory_mib = 0256\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let parseFailure = try #require(accessorError { try TOMLDocument(contentsOfFile: bad) })
        #expect(parseFailure.description == "\(bad):2: vm.memory_mib: leading zeros are not allowed in 0256")

        let absent = directory.appendingPathComponent("absent.toml").path
        let missing = try #require(accessorError { try TOMLDocument(contentsOfFile: absent) })
        #expect(missing.description == "\(absent): configuration file does not exist")

        let unreadable = try #require(accessorError { try TOMLDocument(contentsOfFile: directory.path) })
        #expect(unreadable.description == "\(directory.path): configuration file cannot be read")

        let binary = directory.appendingPathComponent("binary.toml").path
        try Data([0x61, 0x20, 0x3D, 0x20, 0xFF, 0xFE]).write(to: URL(fileURLWithPath: binary))
        let notText = try #require(accessorError { try TOMLDocument(contentsOfFile: binary) })
        #expect(notText.description == "\(binary): configuration file is not valid UTF-8")
    }

    @Test func agentConfigurationReadsTheDiskAndNetworkAndNamesBadKeys() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-agentcfg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let disk = "\(directory)/disk.img"
        #expect(FileManager.default.createFile(atPath: disk, contents: nil))
        #expect(truncate(disk, 8 << 20) == 0)
        func configuration(_ extra: String, disk: String = disk) throws -> AgentConfiguration {
            try agentConfiguration("disk_image = \"\(disk)\"\n" + extra)
        }
        let plain = try configuration("")
        #expect(plain.vm.diskSizes == [8 << 20])
        #expect(plain.identity.diskSize == 8 << 20)
        #expect(plain.nics.isEmpty, "no TAP, no NIC")
        let defaultMAC = try configuration("[network]\ntap = \"tap-web\"").nics.map(\.mac)
        #expect(defaultMAC == [AgentConfiguration.defaultMAC(for: "web-1")])
        #expect(AgentConfiguration.isUnicastMAC(defaultMAC[0]))
        #expect(plain.outputBufferBytes == 16 << 20 && !plain.unsafeNoOutputBuffering)
        #expect(plain.vm.virtio == .legacy, "legacy virtio by default: a small device state at every checkpoint")
        #expect(try configuration("virtio = \"modern\"").vm.virtio == .modern)
        #expect(plain.vm.pausePriority == 10, "pauses under real-time priority by default")
        #expect(try configuration("pause_priority = 0").vm.pausePriority == 0)
        let networked = try configuration("mac = \"52:54:00:aa:bb:cc\"\n[network]\ntap = \"tap-web\"\nbuffer_mib = 4\nunsafe_no_output_buffering = true")
        #expect(networked.nics == [GuestDevices.NIC(tap: "tap-web", mac: "52:54:00:aa:bb:cc")])
        #expect(networked.outputBufferBytes == 4 << 20 && networked.unsafeNoOutputBuffering)

        func failure(_ extra: String, disk: String = disk) -> ConfigurationError? { accessorError { try configuration(extra, disk: disk) } }
        #expect(failure("", disk: "\(directory)/absent.img")?.key == "vm.disk_image")
        #expect(failure("", disk: "\(directory)/absent.img")?.description.contains("truncate -s SIZE") == true)
        #expect(failure("mac = \"01:00:5e:00:00:01\"")?.key == "vm.mac", "a multicast address is refused")
        #expect(failure("mac = \"52:54:00:aa:bb\"")?.key == "vm.mac")

        // Several NICs: one TAP and one MAC each, in order.
        let two = try configuration("macs = [\"52:54:00:aa:bb:01\", \"52:54:00:aa:bb:02\"]\n[network]\ntaps = [\"tap-a\", \"tap-b\"]")
        #expect(two.nics == [GuestDevices.NIC(tap: "tap-a", mac: "52:54:00:aa:bb:01"), GuestDevices.NIC(tap: "tap-b", mac: "52:54:00:aa:bb:02")])
        let derived = try configuration("[network]\ntaps = [\"tap-a\", \"tap-b\", \"tap-c\"]").nics.map(\.mac)
        #expect(derived[0] == AgentConfiguration.defaultMAC(for: "web-1") && Set(derived).count == 3, "distinct derived MACs")
        #expect(failure("[network]\ntaps = [\"a\", \"b\", \"c\", \"d\", \"e\"]")?.description.contains("5 NICs") == true)
        #expect(failure("[network]\ntaps = [\"a\", \"a\"]")?.key == "network.taps")
        #expect(failure("[network]\ntap = \"a\"\ntaps = [\"b\"]")?.description.contains("not both") == true)
        #expect(failure("macs = [\"52:54:00:aa:bb:01\"]\n[network]\ntaps = [\"a\", \"b\"]")?.key == "vm.macs", "one MAC per TAP")
        #expect(failure("[network]\ntaps = [\"a/b\"]")?.key == "network.taps")
        #expect(failure("[network]\ntap = \"a-name-far-too-long\"")?.key == "network.tap")
        #expect(failure("[network]\nbuffer_mib = 0")?.key == "network.buffer_mib")
        #expect(failure("pause_priority = 100")?.key == "vm.pause_priority")
        #expect(failure("virtio = \"1.0\"")?.description.contains("\"legacy\", \"modern\"") == true)
        #expect(failure("[network]\ntpa = \"x\"")?.description.contains("network.tap") == true, "a typo gets a suggestion")
        #expect(truncate(disk, 1000) == 0)
        #expect(failure("")?.description.contains("multiple of 512") == true)
    }

    @Test func agentConfigurationReadsSeveralDisksInOrderAndRefusesBadLists() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-agentcfg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let disks = (0..<9).map { "\(directory)/disk\($0).img" }
        for (index, disk) in disks.enumerated() {
            #expect(FileManager.default.createFile(atPath: disk, contents: nil))
            #expect(truncate(disk, off_t(index + 1) << 20) == 0)
        }
        func list(_ paths: [String]) -> String { "disks = [" + paths.map { "\"\($0)\"" }.joined(separator: ", ") + "]\n" }
        let two = try agentConfiguration(list([disks[2], disks[0]]))
        #expect(two.vm.diskImages == [disks[2], disks[0]])
        #expect(two.identity.diskSizes == [3 << 20, 1 << 20], "sizes in the listed order")
        #expect(try agentConfiguration(list(Array(disks.prefix(8)))).identity.diskSizes.count == 8)

        func failure(_ extra: String) -> ConfigurationError? { accessorError { try agentConfiguration(extra) } }
        #expect(failure(list(disks))?.description.contains("9 disks") == true)
        #expect(failure(list([]))?.key == "vm.disks")
        #expect(failure(list([disks[1], disks[1]]))?.description.contains("listed twice") == true)
        #expect(failure(list([disks[1]]) + "disk_image = \"\(disks[0])\"\n")?.description.contains("not both") == true)
        #expect(failure(list([disks[1], "\(directory)/absent.img"]))?.key == "vm.disks")
        #expect(try agentConfiguration("machine = \"q35\"\nvcpus = 4\n").vm.machine == "q35")
        #expect(try agentConfiguration("machine = \"pc-q35-7.2\"\n").vm.machine == "pc-q35-7.2")
        #expect(failure("machine = \"microvm\"\n")?.key == "vm.machine")
        #expect(failure("machine = \"pc-q35-\"\n")?.key == "vm.machine")

        // UEFI: the variable store is replicated after the disks; a file the operator provides.
        let vars = "\(directory)/VARS.fd"
        #expect(FileManager.default.createFile(atPath: vars, contents: nil))
        #expect(truncate(vars, 540_672) == 0)
        let uefi = try agentConfiguration(list([disks[0]]) + "firmware = \"uefi\"\nuefi_vars = \"\(vars)\"\nrng = true\n")
        #expect(uefi.vm.firmware == .uefi(code: VMDescription.defaultUEFICode, variables: vars))
        #expect(uefi.vm.replicatedImages == [disks[0], vars])
        #expect(uefi.identity.diskSizes == [1 << 20, 540_672])
        #expect(uefi.vm.randomNumberGenerator && uefi.vm.platformArguments.contains("virtio-rng-pci,rng=rng0,disable-modern=on,disable-legacy=off"))
        #expect(uefi.vm.machineOption == "pc,memory-backend=ram,pflash0=uefi-code,pflash1=uefi-vars")
        #expect(try agentConfiguration("").vm.firmware == .bios)
        #expect(try agentConfiguration("").vm.platformArguments.isEmpty, "no firmware flash, no rng by default")
        #expect(failure("firmware = \"uefi\"\n")?.key == "vm.uefi_vars", "UEFI without a variable store")
        #expect(failure("firmware = \"uefi\"\n")?.description.contains("OVMF_VARS_4M.fd") == true)
        #expect(failure("uefi_vars = \"\(vars)\"\n")?.key == "vm.uefi_vars", "a variable store without UEFI")
        #expect(failure("firmware = \"coreboot\"\n")?.key == "vm.firmware")
        #expect(truncate(vars, 131_072) == 0)
        #expect(failure("firmware = \"uefi\"\nuefi_vars = \"\(vars)\"\n")?.description.contains("540672-byte variable store") == true,
                "a 2 MiB build's store with the 4 MiB code")
        #expect(failure("firmware = \"uefi\"\nuefi_vars = \"\(directory)/absent.fd\"\n")?.key == "vm.uefi_vars")
    }

    /// A minimal node configuration with `extra` appended inside its [vm] table (and whatever
    /// tables `extra` opens).
    private func agentConfiguration(_ extra: String) throws -> AgentConfiguration {
        try AgentConfiguration(document: parse("""
            [node]
            name = "a"
            certificates = "/c"
            [peer]
            name = "b"
            [vm]
            id = "web-1"
            memory_mib = 64
            kernel = "/k"
            \(extra)
            """))
    }

    @Test func replicationKeysForThinLinksHaveDefaultsAndNameTheKeyWhenWrong() throws {
        let plain = try agentConfiguration("")
        #expect(plain.replication.mode == .synchronous)
        #expect(plain.replication.maximumInterval == nil && plain.replication.bandwidthLimit == nil)
        #expect(plain.replication.catchUpJournalLimit == 256 << 20)
        #expect(plain.replication.catchUpJournal == "/var/lib/understudy/web-1/catch-up.journal")
        let wan = try AgentConfiguration(document: parse("""
            [node]
            name = "a"
            certificates = "/c"
            [peer]
            name = "b"
            address = "192.0.2.9:7400"
            [vm]
            id = "web-1"
            memory_mib = 64
            kernel = "/k"
            [replication]
            mode = "asynchronous"
            rpo_ms = 3000
            throttle_guest = true
            interval_ms = 50
            interval_max_ms = 2000
            bandwidth_limit = "20Mbit"
            catch_up_journal_mib = 0
            compression = "lz4hc:4"
            """))
        #expect(wan.replication.compression == .high(level: 4))
        #expect(try wan.primary().compression == .high(level: 4))
        #expect(plain.replication.compression == .fast)
        #expect(wan.replication.mode == .asynchronous && wan.replication.throttleGuest)
        #expect(wan.replication.recoveryPointObjective == .seconds(3))
        #expect(wan.replication.bandwidthLimit == 2_500_000)
        #expect(wan.replication.catchUpJournalLimit == 0)
        let primary = try wan.primary()
        #expect(primary.recoveryPoint == RecoveryPointObjective(objective: .seconds(3), throttleGuest: true))
        #expect(primary.maximumInterval == .seconds(2) && primary.interval == .milliseconds(50))
        #expect(primary.bandwidthLimit == 2_500_000)
        #expect(try agentConfiguration("[replication]\nbandwidth_limit = 1250000").replication.bandwidthLimit == 1_250_000)
        #expect(ReplicationConfiguration.parseBandwidth("2.5MB") == 2_500_000)
        #expect(ReplicationConfiguration.parseBandwidth("800kbit") == 100_000)
        #expect(ReplicationConfiguration.parseBandwidth("1Gbit/s") == 125_000_000)
        #expect(ReplicationConfiguration.parseBandwidth("fast") == nil)
        #expect(ReplicationConfiguration.parseBandwidth("-3Mbit") == nil)

        func failure(_ extra: String) -> ConfigurationError? { accessorError { try agentConfiguration(extra) } }
        #expect(failure("[replication]\nmode = \"async\"")?.key == "replication.mode")
        #expect(failure("[replication]\nrpo_ms = 1000")?.description.contains("asynchronous") == true, "an objective only means something in asynchronous mode")
        #expect(failure("[replication]\ninterval_ms = 100\ninterval_max_ms = 50")?.key == "replication.interval_max_ms")
        #expect(failure("[replication]\nbandwidth_limit = \"lots\"")?.description.contains("20Mbit") == true)
        #expect(failure("[replication]\nbandwidth_limit = 10")?.key == "replication.bandwidth_limit")
        #expect(failure("[replication]\ncompression = \"zstd\"")?.description.contains("lz4hc:LEVEL") == true)
        #expect(failure("[replication]\nmode = \"asynchronous\"\n[network]\nunsafe_no_output_buffering = true")?.key
                == "network.unsafe_no_output_buffering")
    }

    @Test func failoverKeysHaveSafeDefaultsAndNameTheKeyWhenWrong() throws {
        func configuration(_ extra: String) throws -> AgentConfiguration { try agentConfiguration(extra) }
        let plain = try configuration("")
        #expect(plain.heartbeat.timeout == .milliseconds(200), "5 intervals of 40 ms, at least 200 ms")
        #expect(plain.failover == FailoverConfiguration())
        #expect(plain.failover.policy == .availability && plain.failover.grace == .seconds(1))
        #expect(!plain.automaticFailover, "no witness and no opt-in: the backup does not fail over by itself")
        #expect(plain.heartbeatDatagrams == nil && plain.witnessEndpoints.isEmpty)
        #expect(try configuration("[failover]\nwithout_witness = true").automaticFailover)
        #expect(!(try configuration("[failover]\nwithout_witness = true\nautomatic = false").automaticFailover))
        let witnessed = try configuration("[witness]\nendpoints = [\"10.0.0.3:2379\", \"https://10.0.0.4:2379\"]\nlease_ttl_s = 3")
        #expect(witnessed.automaticFailover)
        #expect(witnessed.witnessEndpoints.map(\.description) == ["10.0.0.3:2379", "10.0.0.4:2379"])
        #expect(witnessed.witnessLeaseTTL == .seconds(3))
        let tuned = try configuration("""
            [heartbeat]
            interval_ms = 20
            missed = 5
            min_timeout_ms = 100
            udp_listen = "10.0.1.1:7401"
            udp_peer = "10.0.1.2:7401"
            [failover]
            policy = "safety"
            grace_ms = 250
            """)
        #expect(tuned.heartbeat.timeout == .milliseconds(100))
        #expect(tuned.heartbeatDatagrams?.peer.description == "10.0.1.2:7401")
        #expect(tuned.failover.policy == .safety && tuned.failover.grace == .milliseconds(250))

        func failure(_ extra: String) -> ConfigurationError? { accessorError { try configuration(extra) } }
        #expect(failure("[heartbeat]\nudp_listen = \"10.0.1.1:7401\"")?.key == "heartbeat.udp_peer", "one end of the path is not enough")
        #expect(failure("[heartbeat]\ninterval_ms = 0")?.key == "heartbeat.interval_ms")
        #expect(failure("[failover]\npolicy = \"yolo\"")?.description.contains("\"availability\", \"safety\"") == true)
        #expect(failure("[witness]\nendpoints = [\"nowhere\"]")?.key == "witness.endpoints")
        let plaintext = failure("[witness]\nendpoints = [\"http://10.0.0.4:2379\"]")
        #expect(plaintext?.key == "witness.endpoints" && plaintext?.message.contains("TLS") == true, "the witness is never reached in plain HTTP")
        #expect(failure("[witness]\nendpoints = [\"10.0.0.3:2379\"]\n[failover]\nwithout_witness = true")?.key == "failover.without_witness",
                "a witness and the opt-out together are contradictory")
    }

    @Test func metricsListenIsOptionalAndNamesTheKeyWhenWrong() throws {
        #expect(try agentConfiguration("").metricsListen == nil, "no [metrics] table: no endpoint")
        #expect(try agentConfiguration("[metrics]\nlisten = \"127.0.0.1:9464\"").metricsListen?.description == "127.0.0.1:9464")
        #expect(try agentConfiguration("[metrics]\nlisten = \"[::1]:9464\"").metricsListen?.description == "[::1]:9464")
        #expect(try agentConfiguration("[metrics]\nlisten = \"0.0.0.0:0\"\n[backup]\nlisten = \"0.0.0.0:0\"").metricsListen?.port == 0,
                "port 0 (any free port) twice is no conflict")

        func failure(_ extra: String) -> ConfigurationError? { accessorError { try agentConfiguration(extra) } }
        let noPort = failure("[metrics]\nlisten = \"127.0.0.1\"")
        #expect(noPort?.key == "metrics.listen" && noPort?.line == 11, "\(String(describing: noPort))")
        #expect(noPort?.description.contains("has no port") == true)
        #expect(failure("[metrics]\nlisten = \"127.0.0.1:99999\"")?.description.contains("a port from 0 to 65535") == true)
        #expect(failure("[metrics]\nlisten = 9464")?.key == "metrics.listen", "a number is not an address")
        #expect(failure("[metrics]\nlisten = \":9464\"")?.key == "metrics.listen", "no host")
        let clash = failure("[metrics]\nlisten = \"0.0.0.0:7400\"\n[backup]\nlisten = \"0.0.0.0:7400\"")
        #expect(clash?.key == "metrics.listen" && clash?.description.contains("backup.listen") == true)
        #expect(failure("[metrics]\nlsiten = \"127.0.0.1:9464\"")?.description.contains("metrics.listen") == true, "a typo gets a suggestion")
    }

    @Test func gateRulesAreReadInOrderAndABadRuleNamesItsIndexAndField() throws {
        #expect(try agentConfiguration("").policy == .allowAll, "no rules: everything passes, as without a policy")
        let policy = try agentConfiguration("""
            [network]
            default_action = "deny"
            [[network.rules]]
            name = "web"
            action = "allow"
            direction = "to_guest"
            protocol = "tcp"
            destination_ports = "8000-8100"
            source = "10.0.0.0/8"
            [[network.rules]]
            action = "allow"
            protocol = "icmp"
            destination = "192.0.2.1"
            rate = 10
            [[network.rules]]
            action = "deny"
            protocol = "udp"
            source_ports = 53
            """).policy
        #expect(policy.defaultAction == .deny)
        #expect(policy.rules == [
            GateRule(name: "web", action: .allow, direction: .toGuest, traffic: .tcp, source: IPv4Network(parsing: "10.0.0.0/8"),
                     destinationPorts: PortRange(8000, 8100)),
            GateRule(action: .allow, traffic: .icmp, destination: IPv4Network(parsing: "192.0.2.1"), rateLimit: .init(packetsPerSecond: 10, burst: 10)),
            GateRule(action: .deny, traffic: .udp, sourcePorts: PortRange(53, 53)),
        ])

        func failure(_ rule: String) -> ConfigurationError? {
            accessorError { try agentConfiguration("[[network.rules]]\naction = \"allow\"\n[[network.rules]]\n" + rule) }
        }
        let cases: [(rule: String, key: String, words: String)] = [
            ("protocol = \"tcp\"", "network.rules[1].action", "rule 1: missing required key"),
            ("action = \"drop\"", "network.rules[1].action", "expected one of \"allow\", \"deny\""),
            ("action = \"deny\"\ndirection = \"in\"", "network.rules[1].direction", "\"from_guest\""),
            ("action = \"deny\"\nprotocol = \"sctp\"", "network.rules[1].protocol", "\"arp\""),
            ("action = \"deny\"\nsource = \"10.0.0.1/8\"", "network.rules[1].source", "rule 1: \"10.0.0.1/8\" is not an IPv4"),
            ("action = \"deny\"\nprotocol = \"tcp\"\ndestination_ports = \"90-80\"", "network.rules[1].destination_ports", "ascending"),
            ("action = \"deny\"\nprotocol = \"icmp\"\ndestination_ports = \"80\"", "network.rules[1].destination_ports", "ports need protocol"),
            ("action = \"deny\"\nrate = 5", "network.rules[1].rate", "a deny rule drops everything"),
            ("action = \"allow\"\nburst = 5", "network.rules[1].burst", "a burst needs a rate"),
            ("action = \"allow\"\nport = \"80\"", "network.rules[1].port", "unknown key"),
        ]
        for (rule, key, words) in cases {
            let error = failure(rule)
            #expect(error?.key == key, "\(rule): \(String(describing: error))")
            #expect(error?.line != nil, "\(rule): \(String(describing: error))")
            #expect(error?.description.contains(words) == true, "\(rule): \(String(describing: error))")
        }
    }
}
