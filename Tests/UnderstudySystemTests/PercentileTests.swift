import Testing
import UnderstudySystem

@Suite("percentile (nearest rank)")
struct PercentileTests {
    @Test("the sample at rank ⌈p·n⌉, never an interpolation", arguments: [
        (0.5, 50.0), (0.99, 99.0), (0.999, 100.0), (1.0, 100.0), (0.0, 1.0), (0.01, 1.0), (0.011, 2.0),
    ])
    func hundredSamples(fraction: Double, expected: Double) {
        let samples = (1...100).map(Double.init)
        #expect(percentile(samples, fraction) == expected)
    }

    @Test("a p99 of fewer than 100 samples is their maximum; p50 of an even count is the lower middle")
    func fewSamples() {
        #expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.99) == 10)
        #expect(percentile([1, 2, 3, 4], 0.5) == 2)
        #expect(percentile([7], 0.5) == 7)
    }

    @Test func noSamples() {
        #expect(percentile([], 0.99) == 0)
    }
}
