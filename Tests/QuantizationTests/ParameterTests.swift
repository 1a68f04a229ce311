import Testing
@testable import KVCache

@Suite struct ParameterValidationTests {
    func error(_ p: QuantizationParameters, headDim: Int = 64) -> QuantizationParameterError? {
        do {
            try p.validate(headDim: headDim)
            return nil
        } catch {
            return error
        }
    }

    @Test func defaultsAreValid() {
        #expect(error(QuantizationParameters()) == nil)
        #expect(error(QuantizationParameters(), headDim: 128) == nil)
        let p = QuantizationParameters()
        #expect(p.groupSize == 32 && p.residualLength == 32 && p.subspaceDim == 20 && p.lambda == 0.001)
        #expect(p.quantGroupSize == 32 && p.subspaceRope == .post && p.keyRope == .pre)
        for bits in [2, 4, 8] { #expect(error(QuantizationParameters(kBits: bits, vBits: bits)) == nil) }
        #expect(error(QuantizationParameters(quantGroupSize: 64)) == nil)
    }

    @Test(arguments: [0, 1, 3, 5, 16])
    func rejectsKeyBits(bits: Int) {
        let e = error(QuantizationParameters(kBits: bits))
        #expect(e?.parameter == "kBits")
        #expect(e?.description.contains("\(bits) bits is not supported") == true)
        #expect(e?.description.contains("2, 4 or 8") == true)
    }

    @Test func rejectsValueBits() {
        #expect(error(QuantizationParameters(vBits: 3))?.parameter == "vBits")
    }

    @Test func rejectsGroupSizeNotDividingHeadDim() {
        let e = error(QuantizationParameters(groupSize: 48, residualLength: 48))
        #expect(e?.parameter == "groupSize")
        #expect(e?.message.contains("does not divide the head dimension 64") == true)
    }

    @Test func rejectsGroupSizeTooSmallToPack() {
        let e = error(QuantizationParameters(kBits: 2, groupSize: 8, residualLength: 32))
        #expect(e?.parameter == "groupSize")
        #expect(e?.message.contains("codes per 32-bit word") == true)
    }

    @Test func rejectsQuantGroupSize() {
        for qgs in [0, 24, 128] {
            let e = error(QuantizationParameters(quantGroupSize: qgs))
            #expect(e?.parameter == "quantGroupSize")
            #expect(e?.message.contains("does not divide the head dimension 64") == true)
        }
    }

    @Test func rejectsResidualLength() {
        for r in [0, 16, 48] {
            let e = error(QuantizationParameters(residualLength: r))
            #expect(e?.parameter == "residualLength")
            #expect(e?.message.contains("multiple of the group size 32") == true)
        }
    }

    @Test func rejectsOtherSettings() {
        #expect(error(QuantizationParameters(subspaceDim: 0))?.parameter == "subspaceDim")
        #expect(error(QuantizationParameters(lambda: -1))?.parameter == "lambda")
        #expect(error(QuantizationParameters(lambda: .nan))?.parameter == "lambda")
        #expect(error(QuantizationParameters(), headDim: 63)?.parameter == "headDim")
    }
}
