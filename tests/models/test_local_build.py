"""The text-only build of llama-cpp-python: what the README's install leaves out, the model never loads.

``pytest_opro/models/local/llama_cpp_text_only.cmake`` turns off llama.cpp's common utilities and
the multimodal library (mtmd) when pip compiles llama-cpp-python. These tests check both halves:
the file turns both off in a CMake project laid out as llama-cpp-python's, and the running model
process maps only libllama and ggml, so a build without the other two serves it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_opro.models import local

TEXT_ONLY = Path(local.__file__).parent / "llama_cpp_text_only.cmake"

# llama-cpp-python's top-level CMakeLists.txt in miniature: its own mtmd switch, the common
# utilities forced on, then llama.cpp as a subdirectory that declares its option after project().
OUTER = """\
cmake_minimum_required(VERSION 3.21)
project(llama_cpp NONE)
option(LLAVA_BUILD "Build llava shared library" ON)
set(LLAMA_BUILD_COMMON ON CACHE BOOL "Build llama.cpp common library" FORCE)
add_subdirectory(vendor/llama.cpp)
file(APPEND "${CMAKE_BINARY_DIR}/built.txt" "mtmd=${LLAVA_BUILD}\\n")
"""
INNER = """\
project("llama.cpp" NONE)
option(LLAMA_BUILD_COMMON "llama: build common utils library" OFF)
file(WRITE "${CMAKE_BINARY_DIR}/built.txt" "common=${LLAMA_BUILD_COMMON}\\n")
"""


def configure(tmp_path: Path, *cmake_args: str) -> str:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed (apt-get install cmake)")
    source, build = tmp_path / "src", tmp_path / "build"
    (source / "vendor" / "llama.cpp").mkdir(parents=True)
    (source / "CMakeLists.txt").write_text(OUTER)
    (source / "vendor" / "llama.cpp" / "CMakeLists.txt").write_text(INNER)
    subprocess.run([cmake, "-S", str(source), "-B", str(build), *cmake_args], check=True, capture_output=True)
    return (build / "built.txt").read_text()


def test_without_the_file_llama_cpp_python_builds_common_and_mtmd(tmp_path: Path) -> None:
    assert configure(tmp_path) == "common=ON\nmtmd=ON\n"


def test_the_file_turns_off_common_and_mtmd(tmp_path: Path) -> None:
    assert configure(tmp_path, f"-DCMAKE_PROJECT_llama.cpp_INCLUDE={TEXT_ONLY}") == "common=OFF\nmtmd=OFF\n"


def test_the_readme_and_ci_install_with_the_file() -> None:
    root = Path(__file__).resolve().parents[2]
    setting = f'CMAKE_ARGS="-DCMAKE_PROJECT_llama.cpp_INCLUDE=$PWD/{TEXT_ONLY.relative_to(root)}"'
    readme_commands = (root / "README.md").read_text().split("```")[1].splitlines()[1:3]
    assert all(command.startswith(f"{setting} pip install -e ") for command in readme_commands)
    assert f"{setting} python -m pip install" in (root / ".ci" / "run").read_text()


def test_the_model_process_maps_only_libllama_and_ggml() -> None:
    pytest.importorskip("llama_cpp")
    from pytest_opro.models.local.process import ModelProcess

    process = ModelProcess(local.smollm2_path(), "local/smollm2", 1)
    try:
        (reply,) = process.generate([([{"role": "user", "content": "Say hi."}], {"temperature": 0, "max_tokens": 2})])
        assert not isinstance(reply, Exception)
        maps = Path(f"/proc/{process.proc.pid}/maps").read_text()
    finally:
        process.close()
    libraries = {Path(line.split()[-1]).name.split(".so")[0] for line in maps.splitlines() if "/llama_cpp/lib/" in line}
    assert "libllama" in libraries
    assert libraries <= {"libllama", "libggml", "libggml-base", "libggml-cpu"}, libraries
