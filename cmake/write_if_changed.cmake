# maas_write_if_changed(PATH CONTENT): writes a generated file only when its content changed, so
# what includes it is not rebuilt for nothing (used by the embed_*.cmake scripts).
function(maas_write_if_changed path content)
  set(old "")
  if(EXISTS "${path}")
    file(READ "${path}" old)
  endif()
  if(NOT old STREQUAL "${content}")
    file(WRITE "${path}" "${content}")
  endif()
endfunction()
