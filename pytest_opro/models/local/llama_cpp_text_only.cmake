# Builds only the parts of llama-cpp-python that pytest-opro's embedded model loads: libllama and
# ggml. llama-cpp-python also builds llama.cpp's common utilities and its multimodal library
# (mtmd); pytest-opro never loads either, and they are about 60% of the compile.
#
# Pass it to pip through CMake (the README's commands do):
#   CMAKE_ARGS="-DCMAKE_PROJECT_llama.cpp_INCLUDE=$PWD/pytest_opro/models/local/llama_cpp_text_only.cmake" \
#     pip install -e ".[local]"
#
# CMake runs this file right after llama.cpp's project() call. llama-cpp-python forces
# LLAMA_BUILD_COMMON on before that call, so a -D option cannot turn it off; here it is turned off
# before llama.cpp declares its options. LLAVA_BUILD is llama-cpp-python's switch for mtmd, read
# after llama.cpp is configured. Without this file everything still works: the build takes longer.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "pytest-opro loads no llama.cpp common utilities" FORCE)
set(LLAVA_BUILD OFF CACHE BOOL "pytest-opro loads no multimodal library" FORCE)
