import CUnderstudyShims
import Foundation
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

@Suite("CertificateAuthority")
struct CertificateAuthorityTests {
    static let files = ["ca.pem", "ca.key", "a.pem", "a.key", "b.pem", "b.key"]

    @Test func writesCAAndNodeCredentialsWithPrivateKeyModes() throws {
        try withTemporaryDirectory("transport-test") { root in
            let dir = "\(root)/nested/certs"
            let written = try CertificateAuthority.initialize(directory: dir, nodes: ["a", "b"])
            #expect(written == Self.files.map { "\(dir)/\($0)" })
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == Self.files.sorted())
            #expect(mode(of: dir) == 0o700)
            for file in Self.files {
                let expected: mode_t = file.hasSuffix(".key") ? 0o600 : 0o644 & ~currentUmask()
                #expect(mode(of: "\(dir)/\(file)") == expected, "mode of \(file)")
            }
            for key in ["ca.key", "a.key", "b.key"] {
                let text = try String(contentsOfFile: "\(dir)/\(key)", encoding: .utf8)
                #expect(text.hasPrefix("-----BEGIN PRIVATE KEY-----"), "\(key) is a PKCS#8 PEM key")
            }
            for cert in ["ca.pem", "a.pem", "b.pem"] {
                let text = try String(contentsOfFile: "\(dir)/\(cert)", encoding: .utf8)
                #expect(text.hasPrefix("-----BEGIN CERTIFICATE-----"), "\(cert) is a PEM certificate")
            }
        }
    }

    @Test func certificatesChainToTheCAAndNameTheirNodeViaOpenSSLAPI() throws {
        try withCertificates(nodes: ["a", "b"]) { dir in
            try withCertificates(nodes: ["a"]) { otherDir in
                let ca = try loadCertificate("\(dir)/ca.pem")
                defer { X509_free(ca) }
                let otherCA = try loadCertificate("\(otherDir)/ca.pem")
                defer { X509_free(otherCA) }
                #expect(X509_check_ca(ca) >= 1, "ca.pem is a CA certificate")
                #expect(commonName(ca) == "Understudy CA")
                #expect(daysUntilExpiry(ca) == CertificateAuthority.defaultValidDays + 365
                    || daysUntilExpiry(ca) == CertificateAuthority.defaultValidDays + 364)
                for node in ["a", "b"] {
                    let cert = try loadCertificate("\(dir)/\(node).pem")
                    defer { X509_free(cert) }
                    #expect(X509_check_ca(cert) == 0, "\(node).pem is not a CA")
                    #expect(X509_verify(cert, X509_get0_pubkey(ca)) == 1, "\(node).pem is signed by ca.pem")
                    #expect(X509_verify(cert, X509_get0_pubkey(otherCA)) != 1, "\(node).pem is not signed by another CA")
                    #expect(X509_check_host(cert, node, node.utf8.count, 0, nil) == 1, "\(node).pem names \(node)")
                    let other = node == "a" ? "b" : "a"
                    #expect(X509_check_host(cert, other, 1, 0, nil) == 0, "\(node).pem does not name \(other)")
                    #expect(commonName(cert) == node)
                    let days = daysUntilExpiry(cert)
                    #expect(days == CertificateAuthority.defaultValidDays || days == CertificateAuthority.defaultValidDays - 1)
                    // Both TLS roles: the same certificate serves as client and as server.
                    #expect(X509_check_purpose(cert, X509_PURPOSE_SSL_SERVER, 0) == 1)
                    #expect(X509_check_purpose(cert, X509_PURPOSE_SSL_CLIENT, 0) == 1)
                    // The key file holds the key of the certificate.
                    let key = try loadPrivateKey("\(dir)/\(node).key")
                    defer { EVP_PKEY_free(key) }
                    #expect(X509_check_private_key(cert, key) == 1, "\(node).key matches \(node).pem")
                    #expect(EVP_PKEY_get_base_id(key) == EVP_PKEY_EC)
                }
            }
        }
    }

    @Test func addIssuesOneMoreNodeFromTheExistingCAAndRefusesANameThere() throws {
        try withCertificates(nodes: ["a"]) { dir in
            #expect(try CertificateAuthority.add(directory: dir, node: "spare-1") == ["\(dir)/spare-1.pem", "\(dir)/spare-1.key"])
            let ca = try loadCertificate("\(dir)/ca.pem")
            defer { X509_free(ca) }
            let cert = try loadCertificate("\(dir)/spare-1.pem")
            defer { X509_free(cert) }
            #expect(X509_verify(cert, X509_get0_pubkey(ca)) == 1, "signed by the directory's CA")
            #expect(commonName(cert) == "spare-1")
            let key = try loadPrivateKey("\(dir)/spare-1.key")
            defer { EVP_PKEY_free(key) }
            #expect(X509_check_private_key(cert, key) == 1)
            #expect(mode(of: "\(dir)/spare-1.key") == 0o600)
            #expect(throws: TransportError.self) { try CertificateAuthority.add(directory: dir, node: "A") }
            #expect(throws: TransportError.self) { try CertificateAuthority.add(directory: dir, node: "ca") }
        }
        try withTemporaryDirectory("transport-test") { root in
            #expect(throws: TransportError.self, "no CA there") { try CertificateAuthority.add(directory: root, node: "x") }
        }
    }

    @Test func customValidityIsApplied() throws {
        try withTemporaryDirectory("transport-test") { root in
            try CertificateAuthority.initialize(directory: root + "/c", nodes: ["n1"], validDays: 10)
            let cert = try loadCertificate(root + "/c/n1.pem")
            defer { X509_free(cert) }
            let ca = try loadCertificate(root + "/c/ca.pem")
            defer { X509_free(ca) }
            #expect([9, 10].contains(daysUntilExpiry(cert)))
            #expect([374, 375].contains(daysUntilExpiry(ca)))
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: openSSLTool), "needs the openssl command-line tool"))
    func certificatesVerifyWithTheOpenSSLCommandLineTool() throws {
        try withCertificates(nodes: ["a", "b"]) { dir in
            try withCertificates(nodes: ["a"]) { otherDir in
                let a = try runOpenSSL(["verify", "-CAfile", "\(dir)/ca.pem", "\(dir)/a.pem"])
                #expect(a.status == 0)
                #expect(a.output.contains("\(dir)/a.pem: OK"))
                let b = try runOpenSSL(["verify", "-CAfile", "\(dir)/ca.pem", "-purpose", "sslclient", "\(dir)/b.pem"])
                #expect(b.status == 0)
                #expect(b.output.contains("\(dir)/b.pem: OK"))
                let foreign = try runOpenSSL(["verify", "-CAfile", "\(otherDir)/ca.pem", "\(dir)/a.pem"])
                #expect(foreign.status != 0, "a.pem must not verify against another CA: \(foreign.output)")

                let text = try runOpenSSL(["x509", "-noout", "-text", "-in", "\(dir)/a.pem"])
                #expect(text.status == 0)
                #expect(text.output.contains("DNS:a"))
                #expect(!text.output.contains("DNS:b"))
                #expect(text.output.contains("CA:FALSE"))
                #expect(text.output.contains("TLS Web Server Authentication, TLS Web Client Authentication"))
                #expect(text.output.contains("Subject: O = Understudy, CN = a"))
                #expect(text.output.contains("Issuer: O = Understudy, CN = Understudy CA"))
                #expect(text.output.contains("ASN1 OID: prime256v1"))

                let caText = try runOpenSSL(["x509", "-noout", "-text", "-in", "\(dir)/ca.pem"])
                #expect(caText.output.contains("CA:TRUE"))
                #expect(caText.output.contains("Certificate Sign"))

                let keyPub = try runOpenSSL(["pkey", "-in", "\(dir)/a.key", "-pubout"])
                let certPub = try runOpenSSL(["x509", "-in", "\(dir)/a.pem", "-noout", "-pubkey"])
                #expect(keyPub.status == 0 && certPub.status == 0)
                #expect(keyPub.output == certPub.output, "a.key is the key of a.pem")
            }
        }
    }

    @Test func refusesToOverwriteExistingCredentials() throws {
        try withTemporaryDirectory("transport-test") { root in
            let dir = "\(root)/certs"
            try CertificateAuthority.initialize(directory: dir, nodes: ["a", "b"])
            let before = try Self.files.map { try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\($0)")) }

            let again = #expect(throws: TransportError.self) {
                try CertificateAuthority.initialize(directory: dir, nodes: ["a", "b"])
            }
            #expect(again == .credentials("\(dir)/ca.pem already exists; remove it or choose another directory"))

            // Only one node's files exist: still refused, and nothing is written for the new node.
            try FileManager.default.removeItem(atPath: "\(dir)/ca.pem")
            try FileManager.default.removeItem(atPath: "\(dir)/ca.key")
            let partial = #expect(throws: TransportError.self) {
                try CertificateAuthority.initialize(directory: dir, nodes: ["c", "b"])
            }
            #expect(partial == .credentials("\(dir)/b.pem already exists; remove it or choose another directory"))
            #expect(!FileManager.default.fileExists(atPath: "\(dir)/ca.pem"))
            #expect(!FileManager.default.fileExists(atPath: "\(dir)/c.pem"))
            #expect(!FileManager.default.fileExists(atPath: "\(dir)/c.key"))

            let after = try ["a.pem", "a.key", "b.pem", "b.key"].map { try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\($0)")) }
            #expect(after == Array(before[2...]), "existing credentials are untouched")
        }
    }

    @Test(arguments: [
        ([""], "node name \"\" must be 1-63 letters, digits, '-' or '.', and not \"ca\""),
        (["ca"], "node name \"ca\" must be 1-63 letters, digits, '-' or '.', and not \"ca\""),
        (["a", "ca"], "node name \"ca\" must be 1-63 letters, digits, '-' or '.', and not \"ca\""),
        (["a/b"], "node name \"a/b\" must be 1-63 letters, digits, '-' or '.', and not \"ca\""),
        (["a b"], "node name \"a b\" must be 1-63 letters, digits, '-' or '.', and not \"ca\""),
        (["*"], "node name \"*\" must be 1-63 letters, digits, '-' or '.', and not \"ca\""),
        ([String(repeating: "x", count: 64)],
         "node name \"\(String(repeating: "x", count: 64))\" must be 1-63 letters, digits, '-' or '.', and not \"ca\""),
        (["a", "b", "a"], "node names must be distinct (ignoring case)"),
        (["a", "A"], "node names must be distinct (ignoring case)"),
        ([], "name at least one node"),
    ])
    func rejectsBadNodeNamesBeforeWritingAnything(nodes: [String], message: String) throws {
        try withTemporaryDirectory("transport-test") { root in
            let dir = "\(root)/certs"
            let error = #expect(throws: TransportError.self) {
                try CertificateAuthority.initialize(directory: dir, nodes: nodes)
            }
            #expect(error == .credentials(message))
            #expect(!FileManager.default.fileExists(atPath: dir), "nothing is created for a refused request")
        }
    }

    @Test func acceptsHyphensDotsDigitsAndSixtyThreeCharacters() throws {
        try withTemporaryDirectory("transport-test") { root in
            let long = String(repeating: "n", count: 63)
            let nodes = ["primary-1", "backup.example", "node7", long]
            let written = try CertificateAuthority.initialize(directory: root + "/certs", nodes: nodes)
            #expect(written.count == 2 + 2 * nodes.count)
            for node in nodes {
                let cert = try loadCertificate("\(root)/certs/\(node).pem")
                defer { X509_free(cert) }
                #expect(X509_check_host(cert, node, node.utf8.count, 0, nil) == 1, "certificate names \(node)")
            }
        }
    }
}

// MARK: - Helpers

let openSSLTool = ["/usr/bin/openssl", "/usr/local/bin/openssl", "/opt/homebrew/bin/openssl"]
    .first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/bin/openssl"

func runOpenSSL(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: openSSLTool)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

func mode(of path: String) -> mode_t {
    var info = stat()
    guard stat(path, &info) == 0 else { return 0o7777 }
    return info.st_mode & 0o777
}

/// The process umask, read without changing it (umask(2) would race with parallel tests).
func currentUmask() -> mode_t {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Umask:") }),
          let value = mode_t(line.dropFirst("Umask:".count).trimmingCharacters(in: .whitespaces), radix: 8)
    else { return 0o022 }
    return value
}

struct OpenSSLLoadError: Error, CustomStringConvertible {
    let description: String
}

func loadCertificate(_ path: String) throws -> OpaquePointer {
    let pem = try Data(contentsOf: URL(fileURLWithPath: path))
    let cert: OpaquePointer? = pem.withUnsafeBytes { raw in
        let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count))
        defer { BIO_free(bio) }
        return PEM_read_bio_X509(bio, nil, nil, nil)
    }
    guard let cert else { throw OpenSSLLoadError(description: "cannot parse \(path)") }
    return cert
}

func loadPrivateKey(_ path: String) throws -> OpaquePointer {
    let pem = try Data(contentsOf: URL(fileURLWithPath: path))
    let key: OpaquePointer? = pem.withUnsafeBytes { raw in
        let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count))
        defer { BIO_free(bio) }
        return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
    }
    guard let key else { throw OpenSSLLoadError(description: "cannot parse \(path)") }
    return key
}

func commonName(_ cert: OpaquePointer) -> String? {
    var buffer = [CChar](repeating: 0, count: 256)
    let length = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, &buffer, Int32(buffer.count))
    guard length >= 0 else { return nil }
    return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Whole days from now until the certificate's notAfter.
func daysUntilExpiry(_ cert: OpaquePointer) -> Int {
    var days: Int32 = 0
    var seconds: Int32 = 0
    guard ASN1_TIME_diff(&days, &seconds, nil, X509_get0_notAfter(cert)) == 1 else { return -1 }
    return Int(days)
}
