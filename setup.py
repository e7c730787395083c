"""Build the optional compiled CPU time loop; everything else is in pyproject.toml.

optional=True: without a C compiler the install still succeeds, and the NumPy engine runs its
pure-NumPy loop instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mlstm.engines._cpu_lstm",
            sources=["mlstm/engines/_cpu_lstm.c"],
            # -ffp-contract=fast: a*b + c as one FMA where the CPU has it (ISO C mode, -std=c99,
            # would forbid it): the cell pass's polynomials ~28% faster, each with one rounding
            # fewer. Not -ffast-math: NaN, Inf and signed zeros keep their IEEE meaning.
            extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math", "-std=c99", "-ffp-contract=fast"],
            optional=True,
        )
    ]
)
