# A third-party reader works from the schema alone: flatc decodes a compiled
# bundle's metadata to JSON, and every layer of the example is there with its
# OHWI stored shape and its PyTorch shape.
#   cmake -DFLATC=... -DMPSBC=... -DDUMP=... -DSCHEMA=... -DMANIFEST=... -DEXAMPLE_DIR=...
#         -DWORK=... -P flatc_decode.cmake
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${MPSBC} compile ${MANIFEST} -o ${WORK}/model.mpsb -q
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mpsbc failed: ${rc}")
endif()
execute_process(COMMAND ${FLATC} --json --raw-binary --size-prefixed --strict-json
                        -o ${WORK} ${SCHEMA} -- ${WORK}/model.mpsb
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "flatc could not decode the bundle: ${err}")
endif()
file(READ ${WORK}/model.json json)
string(JSON layers LENGTH "${json}" layers)
file(READ ${MANIFEST} manifest)
string(JSON want LENGTH "${manifest}" layers)
if(NOT layers EQUAL want)
  message(FATAL_ERROR "flatc sees ${layers} layers, the manifest has ${want}")
endif()
math(EXPR last "${layers} - 1")
foreach(i RANGE ${last})
  string(JSON name GET "${json}" layers ${i} name)
  string(JSON index GET "${json}" layers ${i} index)
  string(JSON mname GET "${manifest}" layers ${index} name)
  if(NOT name STREQUAL mname)
    message(FATAL_ERROR "layer ${i} is '${name}' with index ${index}, manifest says '${mname}'")
  endif()
  # Weight: stored [O][kH][kW][I/g], source [O][I/g][kH][kW] (conv2d).
  string(JSON layout GET "${json}" layers ${i} tensors 0 layout)
  string(JSON source_layout GET "${json}" layers ${i} tensors 0 source_layout)
  string(JSON o GET "${json}" layers ${i} tensors 0 shape 0)
  string(JSON kh GET "${json}" layers ${i} tensors 0 shape 1)
  string(JSON ig GET "${json}" layers ${i} tensors 0 shape 3)
  string(JSON so GET "${json}" layers ${i} tensors 0 source_shape 0)
  string(JSON sig GET "${json}" layers ${i} tensors 0 source_shape 1)
  string(JSON skh GET "${json}" layers ${i} tensors 0 source_shape 2)
  if(NOT layout STREQUAL "OHWI" OR NOT source_layout STREQUAL "OIHW" OR NOT o EQUAL so
     OR NOT ig EQUAL sig OR NOT kh EQUAL skh)
    message(FATAL_ERROR "layer ${name}: ${layout} [${o} ${kh} . ${ig}] from ${source_layout} "
                        "[${so} ${sig} ${skh} .]")
  endif()
endforeach()
message(STATUS "flatc decoded ${layers} layers with their OHWI and PyTorch shapes")

# docs/FORMAT.md §6's caveat: flatc prints floats with six fixed decimals, so
# an eps of 1e-7 decodes as 0.0, while mpsb-dump --json prints the exact
# float32 (widened to a double, round-trip digits). If flatc ever prints it
# exactly, the caveat in the doc is wrong and this fails until it is fixed.
file(COPY ${EXAMPLE_DIR}/stem.bias.bin DESTINATION ${WORK}/eps)
file(WRITE ${WORK}/eps/manifest.json [[
{"format": "mpsb.manifest/1", "name": "eps", "layers": [
  {"name": "gn", "type": "group_norm", "num_groups": 4, "num_channels": 16, "eps": 1e-7,
   "weight": "stem.bias.bin", "bias": "stem.bias.bin"}]}
]])
execute_process(COMMAND ${MPSBC} compile ${WORK}/eps/manifest.json -o ${WORK}/eps.mpsb -q
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mpsbc failed on the eps model: ${rc}")
endif()
execute_process(COMMAND ${FLATC} --json --raw-binary --size-prefixed --strict-json
                        -o ${WORK} ${SCHEMA} -- ${WORK}/eps.mpsb
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "flatc could not decode eps.mpsb: ${err}")
endif()
file(READ ${WORK}/eps.json eps_json)
if(NOT eps_json MATCHES "\"eps\": ([^,\n]*)")
  message(FATAL_ERROR "no eps in flatc's JSON:\n${eps_json}")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL "0.0")
  message(FATAL_ERROR "flatc printed eps 1e-7 as '${CMAKE_MATCH_1}', not '0.0': "
                      "docs/FORMAT.md §6's caveat about rounded floats is out of date")
endif()
execute_process(COMMAND ${DUMP} ${WORK}/eps.mpsb --layer gn --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE dump_json ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mpsb-dump --layer gn --json failed: ${err}")
endif()
# 1.0000000116860974e-07 is the float32 nearest 1e-7, printed as a double
# with the digits that read back to the same value.
if(NOT dump_json MATCHES "\"eps\": *1\\.0000000116860974e-07[,}\n ]")
  message(FATAL_ERROR "mpsb-dump --json does not print eps 1e-7 exactly:\n${dump_json}")
endif()
message(STATUS "flatc rounds eps 1e-7 to 0.0; mpsb-dump --json prints 1.0000000116860974e-07")
