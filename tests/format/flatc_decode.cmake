# A third-party reader works from the schema alone: flatc decodes a compiled
# bundle's metadata to JSON, and every layer of the example is there with its
# OHWI stored shape and its PyTorch shape.
#   cmake -DFLATC=... -DMPSBC=... -DSCHEMA=... -DMANIFEST=... -DWORK=... -P flatc_decode.cmake
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
