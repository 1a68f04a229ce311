import CKernels

/// Sampling settings of a request. `temperature == 0` means greedy (argmax, lowest id on ties).
public struct SamplingParameters: Sendable, Equatable, Codable {
    public var temperature: Float = 0.8
    /// 0 disables.
    public var topK: Int = 40
    /// 1 disables.
    public var topP: Float = 0.95
    /// 0 disables.
    public var minP: Float = 0.05
    /// 1 disables. Applied to the last `repetitionWindow` tokens, as llama.cpp does.
    public var repetitionPenalty: Float = 1.0
    public var repetitionWindow: Int = 64
    public var seed: UInt64 = 0

    public init() {}

    /// Greedy decoding.
    public static var greedy: SamplingParameters {
        var p = SamplingParameters()
        p.temperature = 0
        return p
    }

    /// Checks ranges; the message names the field and the value.
    public func validate() throws(SamplingError) {
        guard temperature.isFinite, temperature >= 0 else {
            throw SamplingError("temperature must be ≥ 0, got \(temperature)")
        }
        guard topK >= 0 else { throw SamplingError("top-k must be ≥ 0, got \(topK)") }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw SamplingError("top-p must be in (0, 1], got \(topP)") }
        guard minP.isFinite, minP >= 0, minP <= 1 else { throw SamplingError("min-p must be in [0, 1], got \(minP)") }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else {
            throw SamplingError("repetition penalty must be > 0, got \(repetitionPenalty)")
        }
        guard repetitionWindow >= 0 else {
            throw SamplingError("repetition window must be ≥ 0, got \(repetitionWindow)")
        }
    }
}

/// An invalid sampling setting.
public struct SamplingError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ d: String) { description = d }
}

/// xoshiro256** seeded through SplitMix64: small, fast and reproducible across platforms.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var z = seed
        s = (Self.splitMix64(&z), Self.splitMix64(&z), Self.splitMix64(&z), Self.splitMix64(&z))
    }

    /// One step of SplitMix64 on the state `z`.
    static func splitMix64(_ z: inout UInt64) -> UInt64 {
        z &+= 0x9E37_79B9_7F4A_7C15
        var x = z
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 31)
    }

    public mutating func next() -> UInt64 {
        func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    /// A uniform float in [0, 1) with 24 bits of randomness.
    public mutating func nextUnitFloat() -> Float { Float(next() >> 40) / Float(1 << 24) }
}

/// Picks the next token from logits: repetition penalty, top-k, top-p, min-p, temperature,
/// then a draw from a seeded generator (or argmax when greedy).
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        self.rng = SeededGenerator(seed: parameters.seed)
    }

    /// Argmax, lowest id on ties (llama.cpp's greedy rule).
    public static func argmax(_ logits: [Float]) -> Int {
        logits.withUnsafeBufferPointer { Int(sq_argmax($0.baseAddress, Int64($0.count))) }
    }

    /// A sampler as it is after `draws` tokens were sampled with these parameters: every
    /// non-greedy draw takes exactly one number from the generator, so a sequence resumed
    /// elsewhere (a replay on another worker) continues the same random stream.
    public init(_ parameters: SamplingParameters, resumingAfter draws: Int) {
        self.init(parameters)
        if parameters.temperature != 0 {
            for _ in 0..<max(0, draws) { _ = rng.next() }
        }
    }

    /// Samples one token; `history` is the sequence so far (prompt and generated ids).
    public mutating func sample(logits input: [Float], history: [Int32]) -> Int32 {
        let p = parameters
        var logits = input
        if p.repetitionPenalty != 1, p.repetitionWindow > 0 {
            var seen = Set<Int32>()
            for t in history.suffix(p.repetitionWindow) where t >= 0 && Int(t) < logits.count && seen.insert(t).inserted
            {
                let l = logits[Int(t)]
                logits[Int(t)] = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty
            }
        }
        if p.temperature == 0 { return Int32(Self.argmax(logits)) }

        // Candidates sorted by logit (descending, ties by id), cut by top-k.
        var ids = Array(0..<logits.count)
        let k = p.topK > 0 ? min(p.topK, ids.count) : ids.count
        ids.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        ids.removeSubrange(k...)
        // Softmax over the candidates (at temperature 1) for top-p and min-p, as llama.cpp orders them.
        func probabilities(_ ids: [Int], temperature: Float) -> [Double] {
            let mx = Double(logits[ids[0]])
            let e = ids.map { exp((Double(logits[$0]) - mx) / Double(temperature)) }
            let sum = e.reduce(0, +)
            return e.map { $0 / sum }
        }
        if p.topP < 1 {
            let probs = probabilities(ids, temperature: 1)
            var cum = 0.0
            var keep = ids.count
            for (i, pr) in probs.enumerated() {
                cum += pr
                if cum >= Double(p.topP) {
                    keep = i + 1
                    break
                }
            }
            ids.removeSubrange(keep...)
        }
        if p.minP > 0 {
            let probs = probabilities(ids, temperature: 1)
            let cut = probs[0] * Double(p.minP)
            let keep = max(1, probs.filter { $0 >= cut }.count)
            ids.removeSubrange(keep...)
        }
        let probs = probabilities(ids, temperature: p.temperature)
        let u = Double(rng.nextUnitFloat())
        var cum = 0.0
        for (i, pr) in probs.enumerated() {
            cum += pr
            if u < cum { return Int32(ids[i]) }
        }
        return Int32(ids[ids.count - 1])
    }

    /// log softmax(logits)[token] (0 for a token outside the row), with the vectorised max and
    /// exponential sum (relative error ~1e-6; a fixed order, so the same on every run).
    public static func logProbability(logits: [Float], token: Int) -> Float {
        guard logits.indices.contains(token) else { return 0 }
        return logits.withUnsafeBufferPointer { p in
            let n = Int64(p.count)
            let m = sq_max(p.baseAddress, n)
            return (p[token] - m) - log(sq_sum_exp(p.baseAddress, n, m))
        }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
