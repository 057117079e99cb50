"""Compiler options shared by every package of the library."""

# C11 everywhere; symbols hidden by default and only kf_* exported (KF_API in core/kfuse.h).
KF_LIBRARY_COPTS = [
    "-std=c11",
    "-D_GNU_SOURCE",
    "-DKF_BUILDING_LIBRARY",
    "-fvisibility=hidden",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
]

# Programs that use only the public API (tests, bench, demo).
KF_PROGRAM_COPTS = [
    "-std=c11",
    "-D_GNU_SOURCE",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
]
