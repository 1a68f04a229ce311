// swift-tools-version: 6.0
import PackageDescription

/// C kernels are always optimised: debug builds of SIMD code are ~450× slower and would make
/// the test suite crawl. Per-function `target` attributes select AVX2/FMA/F16C at run time.
let kernelFlags: [CSetting] = [.unsafeFlags(["-O3", "-fno-math-errno", "-Wall"])]

let package = Package(
    name: "squat",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "squat", targets: ["squat"]),
        .library(name: "LlamaModel", targets: ["LlamaModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ"),
        .systemLibrary(name: "CProtobufC", path: "Sources/CProtobufC"),
        .target(name: "CKernels", cSettings: kernelFlags),
        .target(name: "KVCache", dependencies: ["CKernels"]),
        .target(name: "LlamaModel", dependencies: ["CKernels", "KVCache"]),
        .executableTarget(
            name: "squat",
            dependencies: [
                "LlamaModel", "KVCache",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "KernelTests", dependencies: ["CKernels"], resources: [.copy("Fixtures")]),
        .testTarget(name: "QuantizationTests", dependencies: ["KVCache", "CKernels"]),
        .testTarget(
            name: "LlamaModelTests", dependencies: ["LlamaModel", "KVCache", "CKernels"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "KVCacheTests", dependencies: ["KVCache", "CKernels"]),
        .testTarget(name: "SystemLibraryTests", dependencies: ["CZeroMQ", "CProtobufC"]),
    ],
    swiftLanguageModes: [.v6]
)
