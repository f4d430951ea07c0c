// The page dracarys-serve shows at GET /: serve/page.html, built into the executable so that
// nothing is fetched from anywhere else.
#pragma once

#include <string>

namespace dracarys {

const std::string& page_html();

}  // namespace dracarys
