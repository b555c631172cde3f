import Foundation

/// The program an inspection runs on the mounted replica, and how it is given the mount directory:
/// `{}` in any argument becomes the directory (as in `find -exec`: `cat {}/etc/hostname`); with no
/// `{}` anywhere, the directory is appended as the last argument (`clamscan -r` scans it).
public struct InspectionCommand: Sendable, Equatable, CustomStringConvertible {
    /// The program (`words[0]`, looked up on PATH unless it holds a '/') and its arguments.
    public let words: [String]

    public static let placeholder = "{}"

    /// Nil for no words or an empty program name.
    public init?(_ words: [String]) {
        guard let program = words.first, !program.isEmpty else { return nil }
        self.words = words
    }

    /// The command line to run with the mount directory `directory`.
    public func arguments(directory: String) -> [String] {
        words.contains { $0.contains(Self.placeholder) }
            ? words.map { $0.replacingOccurrences(of: Self.placeholder, with: directory) } : words + [directory]
    }

    /// The program's path: `words[0]` itself when it names a path, else the first executable of that
    /// name in `searchPath` (PATH's form); nil when there is none, so that the inspection can refuse
    /// before it copies anything.
    public func executable(searchPath: String, isExecutable: (String) -> Bool) -> String? {
        let program = words[0]
        if program.contains("/") { return isExecutable(program) ? program : nil }
        return searchPath.split(separator: ":").map { "\($0)/\(program)" }.first(where: isExecutable)
    }

    public var description: String { words.joined(separator: " ") }
}
