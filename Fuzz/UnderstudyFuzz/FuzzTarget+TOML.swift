import Foundation
import UnderstudyAgent

extension FuzzTarget {
    /// A configuration file: parsed as TOML, then read as an agent's configuration (every key's
    /// type and range checked, as at start and at SIGHUP).
    static let toml = FuzzTarget(name: "toml", run: { bytes in
        guard let text = String(validating: bytes, as: UTF8.self),
              let document = try? TOMLDocument(parsing: text, source: "fuzz.toml") else { return }
        _ = try? AgentConfiguration(document: document)
    }, seeds: {
        // The shipped example configurations, every one of them.
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Deploy/examples").standardized
        let files = FileManager.default.enumerator(at: examples, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "toml" }.sorted { $0.path < $1.path } ?? []
        return files.compactMap { try? Array(Data(contentsOf: $0)) }
    })
}
